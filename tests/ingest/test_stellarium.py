"""Tests of the built-in Stellarium sample (vo_similarity.ingest.stellarium)."""

from __future__ import annotations

import math
import shutil
from collections import Counter

import pytest
from real_components import need

from vo_similarity.ingest.stellarium import (
    DEFAULT_ROOT,
    builtin_sample,
    corners_to_circle,
    designation,
    loads_tolerant,
)


@pytest.fixture
def installed():
    if not (DEFAULT_ROOT / "textures.json").is_file():
        need("Debian's stellarium-data (apt-get install stellarium-data)")


def _sep(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular distance in degrees (haversine)."""
    p1, p2, dra = math.radians(dec1), math.radians(dec2), math.radians(ra2 - ra1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dra / 2) ** 2
    return math.degrees(2 * math.asin(math.sqrt(h)))


def test_tolerant_json_accepts_what_stellarium_writes():
    text = """{ // a comment
        "a": [-.97, .5, +1, 1., 2e3, ],  /* block
        comment */
        "url": "http://example.org/x//y/*z*/",
        "b": {"c": null, "d": true,},
    }"""
    assert loads_tolerant(text) == {
        "a": [-0.97, 0.5, 1, 1.0, 2000.0],
        "url": "http://example.org/x//y/*z*/",
        "b": {"c": None, "d": True},
    }


def test_tolerant_json_still_rejects_garbage_with_position():
    with pytest.raises(ValueError, match="unexpected .=. at line 2, column 10"):
        loads_tolerant('{"a":\n  1, "b" = 2}')


def test_designations_from_file_names():
    assert designation("m31") == ("M 31", "M", 31)
    assert designation("m1dumont") == ("M 1", "M", 1)
    assert designation("n7000") == ("NGC 7000", "NGC", 7000)
    assert designation("n4038-9") == ("NGC 4038/4039", "NGC", 4038)
    assert designation("n869-884spano") == ("NGC 869/884", "NGC", 869)
    assert designation("sh2-101-vasey") == ("Sh 2-101", "Sh2", 101)
    assert designation("sh2-1-2") == ("Sh 2-1", "Sh2", 1)
    assert designation("ic2118-1") == ("IC 2118", "IC", 2118)
    assert designation("u8335h") == ("UGC 8335", "UGC", 8335)
    assert designation("p47847-sdss2") == ("PGC 47847", "PGC", 47847)
    assert designation("barnard142-vasey") == ("B 142", "B", 142)
    assert designation("coma_cluster") is None
    assert designation("lmc_01") is None


def test_corners_to_circle_across_ra_zero():
    # a 1°×1° square straddling RA 0 on the equator, corners given as -0.5 and 360.5
    ra, dec, fov = corners_to_circle([[-0.5, -0.5], [0.5, -0.5], [360.5, 0.5], [359.5, 0.5]])
    assert _sep(ra, dec, 0.0, 0.0) < 1e-9
    assert fov == pytest.approx(math.sqrt(2), rel=1e-3)


def test_missing_package_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install stellarium-data"):
        builtin_sample(tmp_path)


@pytest.mark.usefixtures("installed")
def test_missing_and_duplicate_entries_are_skipped(tmp_path, caplog):
    shutil.copy(DEFAULT_ROOT / "m57dumont.png", tmp_path / "m57dumont.png")
    (tmp_path / "textures.json").write_text(
        """{"serverCredits": {"short": "Example server"}, "subTiles": [
        {"imageCredits": {"Short": "Someone"}, "imageUrl": "m57dumont.png",
         "worldCoords": [[[283.45,32.97], [283.34,32.97], [283.34,33.09], [283.45,33.09],]]},
        {"imageCredits": {"short": "Again"}, "imageUrl": "m57dumont.png",
         "worldCoords": [[[1,1], [2,1], [2,2], [1,2]]]},
        {"imageCredits": {"short": "Nobody"}, "imageUrl": "gone.png",
         "worldCoords": [[[1,1], [2,1], [2,2], [1,2]]]},
        ]}"""
    )
    (entry,) = builtin_sample(tmp_path)
    assert entry.obs_id == "stellarium/m57dumont" and entry.target_name == "M 57"
    assert entry.credit == "Someone — server: Example server"
    assert entry.category == ""  # no catalog.dat in this folder
    assert "gone.png" in caplog.text and "twice" in caplog.text


@pytest.fixture(scope="module")
def sample():
    if not (DEFAULT_ROOT / "textures.json").is_file():
        need("Debian's stellarium-data (apt-get install stellarium-data)")
    return builtin_sample()


def test_builtin_sample_has_555_complete_entries(sample):
    assert len(sample) == 555
    assert len({i.obs_id for i in sample}) == 555
    for i in sample:
        assert i.path.is_file() and i.path.suffix == ".png"
        assert 0.0 <= i.s_ra < 360.0 and -90.0 <= i.s_dec <= 90.0
        assert 0.001 < i.s_fov < 30.0
        assert i.credit.strip() and i.target_name.strip()
        assert i.label == ""


def test_builtin_sample_categories(sample):
    counts = Counter(i.category for i in sample)
    assert counts[""] <= 5
    assert counts["galaxy"] > 150 and counts["globular cluster"] > 50
    assert counts["planetary nebula"] > 30 and counts["open cluster"] > 30
    by_id = {i.obs_id: i for i in sample}
    assert by_id["stellarium/m31"].category == "galaxy"
    assert by_id["stellarium/m13"].category == "globular cluster"
    assert by_id["stellarium/m57dumont"].category == "planetary nebula"
    assert by_id["stellarium/m1dumont"].category == "supernova remnant"
    assert by_id["stellarium/pleiades"].category == "open cluster"


@pytest.mark.parametrize(
    "obs_id, ra, dec",
    [  # catalogue positions (SIMBAD, ICRS)
        ("stellarium/m31", 10.68471, 41.26875),  # Andromeda galaxy
        ("stellarium/m1dumont", 83.63308, 22.01450),  # Crab nebula
        ("stellarium/m57dumont", 283.39623, 33.02914),  # Ring nebula
        ("stellarium/m42", 83.82208, -5.39111),  # Orion nebula
        ("stellarium/n7000", 314.75, 44.33),  # North America nebula (~2° across)
        ("stellarium/m6", 265.0833, -32.2533),  # corners written with negative RA
    ],
)
def test_known_objects_land_at_their_catalogue_positions(sample, obs_id, ra, dec):
    (i,) = [i for i in sample if i.obs_id == obs_id]
    assert _sep(i.s_ra, i.s_dec, ra, dec) < 0.25 * i.s_fov, (i.s_ra, i.s_dec, i.s_fov)
