"""The manifest's own ECSV reading and writing against astropy's."""

import math

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from vo_similarity.ingest.manifest import read_manifest, read_manifest_meta, write_manifest
from vo_similarity.workdir import MANIFEST_COLUMNS

LONG_CREDIT = "Observatory — " + ", ".join(["a very long credit line"] * 60)

META = {"authority": "example.org", "collection": "test", "image_size": 64,
        "preprocess": {"clip": [0.5, 99.9], "channels": None}}


def _rows():
    texts = ["M 1", "", 'say "hi"', "a,b", "ünïcödé ✓", "#not a comment", "nan", "1.5", "x"]
    rows = []
    for i, text in enumerate(texts):
        rows.append({"image_id": i, "obs_publisher_did": f"ivo://example.org/~?img{i}",
                     "obs_id": f"img{i}", "target_name": text,
                     "s_ra": float(i) * 12.345678901234567 if i != 1 else math.nan,
                     "s_dec": -float(i) / 3, "s_fov": 0.5 if i else math.nan,
                     "category": ["galaxy", "nebula"][i % 2],
                     "credit": LONG_CREDIT if i % 3 else "",
                     "source_path": f"/data/img {i}.fits", "label": text})
    return rows


def _plain(table: Table, name: str) -> list:
    column = table[name]
    if isinstance(column, MaskedColumn):  # astropy reads ECSV's "" as masked
        column = column.filled(np.nan if column.dtype.kind == "f" else "")
    return column.tolist()


def _assert_columns_equal(a: Table, b: Table):
    assert a.colnames == b.colnames == list(MANIFEST_COLUMNS)
    for name in a.colnames:
        left, right = _plain(a, name), _plain(b, name)
        if a[name].dtype.kind == "f":
            np.testing.assert_array_equal(np.asarray(left, float), np.asarray(right, float))
        else:
            assert left == right, name
        assert a[name].description == b[name].description
        assert a[name].unit == b[name].unit


def test_round_trip_and_astropy_reads_the_same(tmp_path):
    path = tmp_path / "manifest.ecsv"
    rows = _rows()
    write_manifest(path, rows, META)
    ours = read_manifest(path)
    for name in MANIFEST_COLUMNS:
        want = [row[name] for row in rows]
        if name.startswith("s_"):
            np.testing.assert_array_equal(ours[name], np.asarray(want, float))
        else:
            assert _plain(ours, name) == want, name
    assert np.isnan(ours["s_ra"][1]) and np.isnan(ours["s_fov"][0])
    assert dict(ours.meta) == META and read_manifest_meta(path) == META
    assert str(ours["s_ra"].unit) == "deg"
    astropy_reads = Table.read(path, format="ascii.ecsv")
    _assert_columns_equal(ours, astropy_reads)
    assert dict(astropy_reads.meta) == META


@pytest.mark.parametrize("column, value", [
    ("target_name", "  NGC 1 "),           # spaces kept (astropy's reader strips them)
    ("credit", "line one\nline two"),      # a quoted newline (astropy's reader splits lines)
])
def test_values_come_back_exactly(tmp_path, column, value):
    path = tmp_path / "manifest.ecsv"
    rows = _rows()[:2]
    rows[0][column] = value
    write_manifest(path, rows, META)
    assert read_manifest(path)[column][0] == value


def test_reads_a_manifest_astropy_wrote(tmp_path):
    """Work directories made before this module streamed the file stay readable."""
    rows = _rows()
    table = Table(rows=[[r[c] for c in MANIFEST_COLUMNS] for r in rows],
                  names=list(MANIFEST_COLUMNS),
                  dtype=[np.int64 if c == "image_id" else
                         np.float64 if c.startswith("s_") else str for c in MANIFEST_COLUMNS])
    for name, description in MANIFEST_COLUMNS.items():
        table[name].description = description
    table.meta.update(META)
    path = tmp_path / "manifest.ecsv"
    table.write(path, format="ascii.ecsv")
    ours = read_manifest(path)
    _assert_columns_equal(ours, table)
    assert ours["target_name"][1] == "" and ours["credit"][0] == ""


def test_strings_are_objects_each_distinct_value_once(tmp_path):
    """Memory follows the data: no fixed-width column as wide as its longest value."""
    path = tmp_path / "manifest.ecsv"
    rows = _rows() * 30
    for i, row in enumerate(rows):
        row["image_id"] = i
    write_manifest(path, rows, META)
    table = read_manifest(path)
    credit = table["credit"]
    assert credit.dtype == object and len(table) == len(rows)
    assert len({id(v) for v in credit}) == len(set(credit)) == 2
    assert table["category"].dtype == object and table["image_id"].dtype == np.int64


def test_rows_out_of_order_are_sorted(tmp_path):
    path = tmp_path / "manifest.ecsv"
    rows = _rows()
    write_manifest(path, rows[::-1], META)
    assert read_manifest(path)["image_id"].tolist() == list(range(len(rows)))


def test_broken_files_say_where(tmp_path):
    path = tmp_path / "manifest.ecsv"
    write_manifest(path, _rows(), META)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[-2] = lines[-2].replace('"img7"', '"img7" "extra"')
    broken = tmp_path / "broken.ecsv"
    broken.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"data row 9 has 12 fields, the header names 11"):
        read_manifest(broken)
    plain = tmp_path / "plain.csv"
    plain.write_text("image_id,obs_id\n0,a\n", encoding="utf-8")
    with pytest.raises(ValueError, match="is not an ECSV file"):
        read_manifest(plain)


def test_other_column_types_go_through_astropy(tmp_path):
    """As before this module read the file itself: every column but the floats
    and image_id as strings."""
    table = Table({"image_id": [1, 0], "flag": [True, False], "obs_id": ["b", ""]})
    path = tmp_path / "other.ecsv"
    table.write(path, format="ascii.ecsv")
    got = read_manifest(path)
    assert got["image_id"].tolist() == [0, 1] and got["flag"].tolist() == ["False", "True"]
    assert got["obs_id"].tolist() == ["", "b"]
