"""refine, query_vector and query_image: the server's vector search, then one TAP step.

The search's answer is checked against the published embeddings (the work
directory's), and each method's payload is replayed: the search request
sent as it is, its results uploaded, and the TAP step run through STILTS.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
from astropy import units as u
from astropy.table import Table
from pyvo.dal import DALQueryError

from vo_similarity.client.search import hits_table
from vo_similarity.evaluate.image_search import spread_selection, transformed

pytestmark = [pytest.mark.dachs, pytest.mark.slow]


@pytest.fixture(scope="module")
def embeddings(service) -> tuple[np.ndarray, dict[str, int]]:
    """The model's embeddings [N, D] and each DID's row in them."""
    model = service.work.model("builtin")
    x = np.load(model.embeddings).astype(np.float64)
    ids = np.load(model.embedding_ids)
    did_of = dict(zip(service.manifest["image_id"], service.manifest["obs_publisher_did"]))
    return x, {did_of[int(i)]: row for row, i in enumerate(ids)}


def _tolerance(dim: int) -> float:
    """Largest difference of a cosine between the server (float32) and numpy (float64).

    A float32 dot product of two unit vectors of length D errs by at most
    about D * u (u = 2**-24, the unit round-off) and normalising the query in
    float32 adds a few u more; so D * eps32 = 2 D u bounds both with room.
    """
    return dim * float(np.finfo(np.float32).eps)


def _check_top(table: Table, x: np.ndarray, rows: dict[str, int], query: np.ndarray,
               left_out: set[str], n: int) -> None:
    """``table`` is a top-n by cosine with ``query`` over the images not left out."""
    q = query / np.linalg.norm(query)
    scores = x @ q
    allowed = np.array([did not in left_out for did in rows])
    order = np.array(list(rows.values()))
    best = np.sort(scores[order[allowed]])[::-1][:n]
    tol = _tolerance(x.shape[1])
    assert len(table) == n and list(table["rank"]) == list(range(1, n + 1))
    assert not set(table["obs_publisher_did"]) & left_out
    got = np.array([scores[rows[d]] for d in table["obs_publisher_did"]])
    np.testing.assert_allclose(np.asarray(table["score"]), got, rtol=0, atol=tol)
    np.testing.assert_allclose(got, best, rtol=0, atol=tol)  # none better was left out
    np.testing.assert_allclose(np.asarray(table["dist"]),
                               np.sqrt(np.maximum(2 - 2 * np.asarray(table["score"]), 0)),
                               rtol=0, atol=1e-6)


def _replay(payload: dict, stilts) -> Table:
    """Send the payload's search as it is, upload its results, run the TAP step in STILTS."""
    search = payload["search"]
    answer = requests.post(search["url"], data=search["data"], timeout=60).json()
    assert set(payload["uploads"]) == {"hits"}
    assert payload["uploads"]["hits"].colnames == hits_table(answer).colnames
    return stilts(payload["adql"], {"hits": hits_table(answer)}, payload["tap_url"])


def test_refine_is_rocchio_over_the_published_embeddings(service, client, embeddings,
                                                         stilts, same_rows):
    x, rows = embeddings
    dids = list(service.manifest["obs_publisher_did"])
    similar, not_similar = [dids[5], str(service.manifest["obs_id"][9])], [dids[40]]
    table = client.refine(similar, not_similar=not_similar, n=30)
    chosen = [dids[5], dids[9]]
    query = x[[rows[d] for d in chosen]].mean(axis=0) - 0.5 * x[rows[dids[40]]]
    _check_top(table, x, rows, query, {*chosen, dids[40]}, 30)
    assert table["s_ra"].unit == "deg"  # the ObsCore columns with their metadata
    payload = client.refine(similar, not_similar=not_similar, n=30, get_query_payload=True)
    same_rows(table, _replay(payload, stilts))


def test_refine_with_one_image_and_no_beta(service, client, embeddings):
    x, rows = embeddings
    did = service.manifest["obs_publisher_did"][100]
    table = client.refine(did, n=10, beta=0.0)
    _check_top(table, x, rows, x[rows[did]], {did}, 10)


def test_query_vector_finds_the_image_of_its_own_embedding(service, client, embeddings,
                                                           stilts, same_rows):
    x, rows = embeddings
    did = service.manifest["obs_publisher_did"][200]
    vector = 3.0 * x[rows[did]]  # need not be unit length
    table = client.query_vector(vector, n=15)
    assert table["obs_publisher_did"][0] == did
    _check_top(table, x, rows, vector, set(), 15)
    same_rows(table, _replay(client.query_vector(vector, n=15, get_query_payload=True), stilts))


@pytest.mark.parametrize("bad", ["ivo://vo-similarity.example/~?nonesuch", "x' OR '1'='1",
                                 "<script>alert(1)</script>"])
def test_unknown_ids_get_the_server_message(client, bad, sent):
    with pytest.raises(DALQueryError) as info:
        client.refine(["stellarium/m1dumont", bad], n=5)
    assert bad in str(info.value)
    with pytest.raises(DALQueryError):
        client.refine("stellarium/m1dumont", not_similar=[bad])
    assert not any("/tap/sync" in url for url in sent.urls[1:])  # no TAP step after the error


# -- query_image -----------------------------------------------------------------------
def test_query_image_of_the_published_file_finds_itself(service, client, stilts, same_rows,
                                                        tmp_path):
    row = service.manifest[0]
    here = client.query_region(f"{row['s_ra']} {row['s_dec']}", radius=1 * u.arcsec)
    assert list(here["obs_publisher_did"]) == [row["obs_publisher_did"]]
    files = client.download_images(here, path=tmp_path, show_progress=False)
    table = client.query_image(files[0], n=5)
    assert table["obs_publisher_did"][0] == row["obs_publisher_did"]
    assert table["score"][0] > 0.999
    same_rows(table, _replay(client.query_image(files[0], n=5, get_query_payload=True),
                             stilts))


def test_query_image_finds_rotated_flipped_rescaled_images(service, client, tmp_path):
    """20 images of the sample, rotated by 37 deg, flipped, scaled by 0.9: own entry in top 5."""
    ours = client.query_region("0 0", radius=180 * u.deg)
    picked = spread_selection(ours, 20)
    files = client.download_images(picked, path=tmp_path / "files", show_progress=False)
    found = []
    for i, (did, path) in enumerate(zip(picked["obs_publisher_did"], files, strict=True)):
        image = transformed(path)
        if i % 2:  # half as files, half as arrays
            target = tmp_path / f"t{i}.png"
            image.save(target)
            query = target
        else:
            query = np.asarray(image)
        found.append(did in set(client.query_image(query, n=5)["obs_publisher_did"]))
    assert np.mean(found) >= 0.95, f"{sum(found)} of {len(found)} found themselves"

