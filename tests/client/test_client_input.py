"""Bad input: a clear InvalidQueryError, and no request where one would be pointless.

``sent`` counts every HTTP request of the client's session (a response hook
of requests).  Checks that need no server at all run against a client
pointed at a closed port, so that any request would fail loudly instead.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astroquery.exceptions import InvalidQueryError

from vo_similarity.client import SimilarityClass, conf


@pytest.fixture()
def offline():
    """A client whose server is a closed port on this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return SimilarityClass(server=f"http://127.0.0.1:{port}")


BAD_N = [0, -1, 1001, 10**9, 2.5, "20", None, True]


@pytest.mark.parametrize("n", BAD_N)
def test_bad_n_is_refused_before_sending(offline, n):
    calls = [lambda: offline.query_similar("ivo://x/~?a", n=n),
             lambda: offline.refine(["a"], n=n),
             lambda: offline.query_outliers(n=n),
             lambda: offline.query_vector(np.ones(4), n=n),
             lambda: offline.query_image(np.ones((8, 8)), n=n)]
    for call in calls:
        with pytest.raises(InvalidQueryError, match="n must be"):
            call()


@pytest.mark.parametrize("did", ["", "   ", None, 42, b"bytes", "a\x00b", "x" * 1001])
def test_bad_ids_are_refused_before_sending(offline, did):
    with pytest.raises(InvalidQueryError, match="did"):
        offline.query_similar(did)
    with pytest.raises(InvalidQueryError, match="similar"):
        offline.refine([did])
    with pytest.raises(InvalidQueryError, match="similar"):
        offline.refine(["ok"], not_similar=[did])


def test_refine_input_is_checked(offline):
    with pytest.raises(InvalidQueryError, match="similar is empty"):
        offline.refine([])
    with pytest.raises(InvalidQueryError, match="in both similar and not_similar"):
        offline.refine(["a", "b"], not_similar=["b"])
    with pytest.raises(InvalidQueryError, match="at most 1000"):
        offline.refine([f"id{i}" for i in range(1001)])
    for beta in (-0.1, 1.5, "0.5", float("nan")):
        with pytest.raises(InvalidQueryError, match="beta"):
            offline.refine(["a"], beta=beta)


@pytest.mark.parametrize("radius", [1.0, 0 * u.deg, -1 * u.arcmin, 181 * u.deg, 3 * u.m,
                                    [1, 2] * u.deg, np.nan * u.deg])
def test_bad_radius_is_refused_before_sending(offline, radius):
    centre = SkyCoord(10, 20, unit=u.deg)
    with pytest.raises(InvalidQueryError, match="radius"):
        offline.query_region(centre, radius=radius)
    with pytest.raises(InvalidQueryError, match="radius"):
        offline.query_object("M 1", radius=radius)
    with pytest.raises(InvalidQueryError, match="radius"):
        offline.join_archive(Table({"s_ra": [1.0], "s_dec": [2.0]}), "http://x.example/tap",
                             radius=radius)


def test_exclude_same_target_must_be_an_angle(offline):
    for bad in (1.0, -1 * u.deg, 2 * u.s):
        with pytest.raises(InvalidQueryError, match="exclude_same_target"):
            offline.query_similar("a", exclude_same_target=bad)


@pytest.mark.parametrize("coordinates", ["M 1", "somewhere", "", 42, (1, 2),
                                         SkyCoord([1, 2], [3, 4], unit=u.deg)])
def test_bad_coordinates_are_refused_before_sending(offline, coordinates):
    with pytest.raises(InvalidQueryError, match="coordinates|position"):
        offline.query_region(coordinates, radius=1 * u.deg)


@pytest.mark.parametrize("neighbours", [-1, 1001, 1.5])
def test_bad_neighbour_counts_are_refused(offline, neighbours):
    with pytest.raises(InvalidQueryError, match="neighbours"):
        offline.query_region("10 20", radius=1 * u.deg, neighbours=neighbours)


def test_join_archive_input_is_checked(offline):
    table = Table({"s_ra": [1.0], "s_dec": [2.0]})
    for url in ("", "ftp://x.example/tap", "not a url", None):
        with pytest.raises(InvalidQueryError, match="tap_url"):
            offline.join_archive(table, url, radius=1 * u.deg)
    for name in ("ivoa.obscore; DROP TABLE x", "o'x", "a b", "TAP_UPLOAD.x.y.z"):
        with pytest.raises(InvalidQueryError, match="not a table name"):
            offline.join_archive(table, "http://x.example/tap", radius=1 * u.deg,
                                 obscore_table=name)
    with pytest.raises(InvalidQueryError, match="s_ra and s_dec"):
        offline.join_archive(Table({"x": [1]}), "http://x.example/tap", radius=1 * u.deg)
    no_position = Table({"s_ra": np.ma.masked_all(2), "s_dec": np.ma.masked_all(2)})
    with pytest.raises(InvalidQueryError, match="no row of the table has a position"):
        offline.join_archive(no_position, "http://x.example/tap", radius=1 * u.deg)


def test_query_image_refuses_what_is_no_image_before_sending(offline, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cases = [(tmp_path / "missing.fits", "no such file"), (tmp_path, "is not a file"),
             (text, "not a FITS, PNG or JPEG"), (str(text), "not a FITS, PNG or JPEG"),
             (42, "file path or a numpy array"), (np.full((8, 8), np.nan), "no finite pixel"),
             (np.zeros((2, 3, 5)), "2-D"), (np.zeros((0, 4)), "2-D"),
             (np.array([["a"]]), "numbers")]
    for image, message in cases:
        with pytest.raises(InvalidQueryError, match=message):
            offline.query_image(image)


def test_download_input_is_checked(offline, tmp_path):
    with pytest.raises(InvalidQueryError, match="astropy Table"):
        offline.download_images([1, 2], path=tmp_path)
    with pytest.raises(InvalidQueryError, match="no access_url column"):
        offline.download_images(Table({"x": [1]}), path=tmp_path)
    with pytest.raises(InvalidQueryError, match="no http"):
        offline.download_images(Table({"access_url": ["file:///etc/passwd"]}), path=tmp_path)
    afile = tmp_path / "f"
    afile.write_text("")
    with pytest.raises(InvalidQueryError, match="not a folder"):
        offline.download_images(Table({"access_url": ["http://x.example/a.png"]}), path=afile)


def test_bad_server_urls_are_refused():
    with pytest.raises(InvalidQueryError, match="server"):
        SimilarityClass(server="127.0.0.1:8080")
    with conf.set_temp("server", "nowhere"), pytest.raises(InvalidQueryError, match="server"):
        SimilarityClass().query_outliers(get_query_payload=True)


# -- with the server: what needs the published models ----------------------------------
@pytest.mark.dachs
def test_unknown_model_lists_the_published_ones(client, sent):
    for model in ("nonesuch", 99, "x' OR '1'='1", 1.5):
        with pytest.raises(InvalidQueryError, match=r"model.*'builtin' \(model_id 1\)|model must"):
            client.query_similar("a", model=model)
    assert len(sent) == 1  # the models table, read once; no query sent


@pytest.mark.dachs
def test_bad_vectors_are_refused_before_sending(client, sent):
    dim = client._model(None).dim
    assert dim  # the server publishes the dimension
    before = len(sent)
    cases = {"must have": [np.ones(dim - 1), np.ones(dim + 1), np.ones((2, dim)), []],
             "non-finite": [np.r_[np.nan, np.ones(dim - 1)], np.r_[np.ones(dim - 1), np.inf]],
             "all zeros": [np.zeros(dim)], f"{dim} numbers": ["abc", {"a": 1}]}
    for message, vectors in cases.items():
        for v in vectors:
            with pytest.raises(InvalidQueryError, match=message):
                client.query_vector(v)
    assert len(sent) == before == 1


@pytest.mark.dachs
def test_defaults_follow_conf(service, client):
    from vo_similarity.client import Similarity

    assert client.server == service.url and client.tap_url == service.tap_url
    assert Similarity.server == service.url  # the module's instance follows conf too
    models = client.list_models()
    assert list(models["name"]) == ["builtin"] and list(models["dim"]) == [256]
    with conf.set_temp("default_model", "nonesuch"), pytest.raises(InvalidQueryError,
                                                                   match="unknown model"):
        client.query_outliers(get_query_payload=True)
    with conf.set_temp("default_model", "1"):
        assert "model_id = 1" in client.query_outliers(get_query_payload=True)
    with conf.set_temp("default_model", "builtin"):
        assert "model_id = 1" in client.query_outliers(get_query_payload=True)


@pytest.mark.dachs
def test_images_that_fail_to_read_fetch_no_model_and_send_no_search(client, sent, tmp_path):
    from astropy.io import fits

    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, then nothing
    blank = tmp_path / "blank.fits"
    fits.PrimaryHDU(np.full((32, 32), np.nan, dtype=np.float32)).writeto(blank)
    flat = np.full((32, 32), 7.0)
    for image in (truncated, blank, flat):
        with pytest.raises(InvalidQueryError) as info:
            client.query_image(image)
        assert str(image)[:20] in str(info.value) or "image" in str(info.value)
    assert len(sent) == 1  # the models table; no search, no TAP step
    assert not client._runtimes  # and the model was not fetched


def test_requests_time_out_after_conf_timeout():
    """A server that accepts the connection but never answers: pyvo's error after the timeout."""
    import time

    from pyvo.dal import DALAccessError

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nobody reads or answers
        client = SimilarityClass(server=f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        with conf.set_temp("timeout", 0.5), pytest.raises(DALAccessError, match="timed out"):
            client.query_region("10 20", radius=1 * u.deg)
        assert time.monotonic() - start < 10
