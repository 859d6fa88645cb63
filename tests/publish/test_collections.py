"""Collections side by side: publishing one never touches another's rows.

On a DaCHS instance of this module's own (the session's published sample must
not see other collections come and go).
"""

from __future__ import annotations

import json

import astropy.units as u
import numpy as np
import pytest
from publish_helpers import run_publish
from scratch_instances import register

from vo_similarity.publish.collections import ID_STRIDE
from vo_similarity.publish.dachs import DachsSite
from vo_similarity.publish.resdir import collection_csv, published_models
from vo_similarity.publish.sample import make_sample_workdir
from vo_similarity.publish.scratch import ScratchDachs

pytestmark = [pytest.mark.dachs, pytest.mark.slow]

N_ALPHA, N_BETA, K = 40, 30, 8


@pytest.fixture(scope="module")
def own_site(dachs_scratch) -> DachsSite:
    # dachs_scratch first: the session's instance must not be the one removed
    # as stale, and the suite's checks know about it
    with ScratchDachs.start() as scratch:
        register(scratch)
        yield scratch.site()


def _publish(site: DachsSite, work, *args: str, check: bool = True):
    return run_publish(str(work.root), "--gavo-rc", str(site.settings), "--no-metadata",
                       *args, check=check)


def _collection_state(site: DachsSite, name: str) -> dict:
    """Everything of collection ``name`` a reader sees, and its files on the server."""
    with site.connect(autocommit=True) as conn:
        models = conn.execute(
            "SELECT model_id, name, n_images, k, hyperparameters FROM similarity.models "
            "WHERE collection = %s ORDER BY model_id", (name,)).fetchall()
        ids = [m[0] for m in models]
        return {
            "images": conn.execute(
                "SELECT image_id, obs_publisher_did, obs_id, s_ra, s_dec FROM "
                "similarity.images WHERE collection = %s ORDER BY image_id", (name,)).fetchall(),
            "obscore": conn.execute(
                "SELECT obs_publisher_did, access_url, preview FROM ivoa.obscore "
                "WHERE obs_collection = %s ORDER BY obs_publisher_did", (name,)).fetchall(),
            "models": models,
            "neighbours": conn.execute(
                "SELECT model_id, image_id, outlier::text, neighbour_ids, dists FROM "
                "similarity.neighbour_sets WHERE model_id = ANY(%s) ORDER BY model_id, image_id",
                (ids,)).fetchall(),
            "vector_files": conn.execute(
                "SELECT model_id, file FROM similarity.vector_files WHERE model_id = ANY(%s) "
                "ORDER BY model_id", (ids,)).fetchall(),
            "csv": collection_csv(site, name).read_bytes()
            if collection_csv(site, name).is_file() else None,
        }


def _expected_neighbours(work, model: str, offset: int) -> dict[int, list[int]]:
    files = work.model(model)
    ids = np.load(files.embedding_ids)
    nb = np.load(files.neighbour_ids)
    return {int(i) + offset: [int(j) + offset for j in row] for i, row in zip(ids, nb)}


def _as_collection(work, name: str):
    """``work`` with its manifest naming collection ``name``."""
    from vo_similarity.ingest.manifest import read_manifest, read_manifest_meta, write_manifest

    table = read_manifest(work.manifest)
    write_manifest(work.manifest, [dict(zip(table.colnames, row)) for row in table],
                   read_manifest_meta(work.manifest) | {"collection": name})
    return work


def _search(site: DachsSite, **params) -> dict:
    import requests

    r = requests.post(f"{site.url}/similarity/q/search/api", data=params, timeout=30)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def test_collections_live_side_by_side(own_site, tmp_path):
    import pyvo

    alpha = make_sample_workdir(tmp_path / "alpha", n=N_ALPHA, k=K,
                                models=("sample", "galactic"), seed=1, collection="alpha")
    beta = make_sample_workdir(tmp_path / "beta", n=N_BETA, k=K, models=("sample",),
                               seed=2, collection="beta")
    _publish(own_site, alpha)
    out = _publish(own_site, beta).stdout
    assert "collection 'beta'" in out and "'alpha' (40 images)" in out

    # (the module's other tests may have published collections of their own)
    models = {key: mid for key, mid in published_models(own_site).items()
              if key[0] in ("alpha", "beta")}
    assert set(models) == {("alpha", "sample"), ("alpha", "galactic"), ("beta", "sample")}
    assert len(set(models.values())) == 3  # one name, two collections, two models

    # ObsCore tells the collections apart; each one's ids lie in its own range
    tap = pyvo.dal.TAPService(f"{own_site.url}/tap")
    counts = dict(tap.search("SELECT obs_collection, COUNT(*) AS n FROM ivoa.obscore "
                             "GROUP BY obs_collection").to_table().iterrows())
    assert (counts["alpha"], counts["beta"]) == (N_ALPHA, N_BETA)
    state_a, state_b = (_collection_state(own_site, c) for c in ("alpha", "beta"))
    off_a = state_a["images"][0][0]  # 0 where alpha is the server's first collection
    off_b = off_a + ID_STRIDE  # the next range
    assert off_a % ID_STRIDE == 0 and (off_a == 0 or len(counts) > 2)
    assert [r[0] for r in state_a["images"]] == list(range(off_a, off_a + N_ALPHA))
    assert [r[0] for r in state_b["images"]] == list(range(off_b, off_b + N_BETA))
    beta_id = models[("beta", "sample")]
    got = {r[1]: list(r[3]) for r in state_b["neighbours"]}
    assert got == _expected_neighbours(beta, "sample", off_b)
    # the similar views and the search service name beta's images by their DIDs;
    # similarity.similar answers with beta's own first model, not alpha's lower ids
    did = state_b["images"][0][1]
    rows = tap.search(f"SELECT TOP 3 obs_publisher_did FROM similarity.similar_by_model "
                      f"WHERE query_did = '{did}' AND model_id = {beta_id} ORDER BY rank")
    beta_dids = {r[1] for r in state_b["images"]}
    assert {str(r["obs_publisher_did"]) for r in rows} <= beta_dids
    assert beta_id == min(mid for (c, _), mid in models.items() if c == "beta")
    assert min(models.values()) < beta_id
    default = tap.search(f"SELECT TOP 3 obs_publisher_did FROM similarity.similar "
                         f"WHERE query_did = '{did}' ORDER BY rank")
    assert [str(r["obs_publisher_did"]) for r in default] == \
        [str(r["obs_publisher_did"]) for r in rows]
    reply = _search(own_site, model=beta_id, n=5, similar="beta-000003")  # an obs_id
    assert [r["image_id"] for r in reply["results"]] == \
        _expected_neighbours(beta, "sample", off_b)[off_b + 3][:5]

    # republishing beta with other neighbours leaves alpha exactly as it was
    beta2 = make_sample_workdir(tmp_path / "beta2", n=N_BETA, k=K, models=("sample",),
                                seed=3, collection="beta")
    _publish(own_site, beta2)
    assert _collection_state(own_site, "alpha") == state_a
    assert published_models(own_site)[("beta", "sample")] == beta_id
    got = {r[1]: list(r[3]) for r in _collection_state(own_site, "beta")["neighbours"]}
    assert got == _expected_neighbours(beta2, "sample", off_b)

    # another image set under beta's name: refused without the flag, nothing changes
    state_b = _collection_state(own_site, "beta")
    other = make_sample_workdir(tmp_path / "other", n=12, k=4, models=("sample",),
                                seed=4, collection="beta", authority="elsewhere.example")
    proc = _publish(own_site, other, check=False)
    assert proc.returncode != 0
    assert "collection 'beta' on this server holds 30 images" in proc.stderr
    assert "--replace-collection" in proc.stderr and "Nothing was changed" in proc.stderr
    assert _collection_state(own_site, "beta") == state_b
    assert _collection_state(own_site, "alpha") == state_a

    # an image of alpha published as another collection: refused either way
    thief = _as_collection(make_sample_workdir(tmp_path / "thief", n=N_ALPHA, k=K,
                                               models=("sample",), seed=1, collection="alpha"),
                           "gamma")
    proc = _publish(own_site, thief, "--replace-collection", check=False)
    assert proc.returncode != 0 and "published already in collection 'alpha'" in proc.stderr
    assert _collection_state(own_site, "alpha") == state_a

    # with the flag, beta is replaced; its model keeps its id, alpha stays
    out = _publish(own_site, other, "--replace-collection").stdout
    assert "30 removed" in out
    assert _collection_state(own_site, "alpha") == state_a
    after = _collection_state(own_site, "beta")
    assert [r[0] for r in after["images"]] == list(range(off_b, off_b + 12))
    assert published_models(own_site)[("beta", "sample")] == beta_id
    got = {r[1]: list(r[3]) for r in after["neighbours"]}
    assert got == _expected_neighbours(other, "sample", off_b)


def test_growing_a_collection_needs_no_flag(own_site, tmp_path):
    """More images under the same DIDs (what `ingest` then `update` give) republish."""
    from vo_similarity.ingest.manifest import read_manifest, read_manifest_meta

    small = make_sample_workdir(tmp_path / "small", n=20, k=5, seed=7, collection="grow")
    big = make_sample_workdir(tmp_path / "big", n=26, k=5, seed=8, collection="grow")
    dids = list(read_manifest(big.manifest)["obs_publisher_did"])
    assert list(read_manifest(small.manifest)["obs_publisher_did"]) == dids[:20]
    assert read_manifest_meta(big.manifest)["collection"] == "grow"
    _publish(own_site, small)
    out = _publish(own_site, big).stdout
    assert "images: imported (collection 'grow')" in out and "removed" not in out
    with own_site.connect(autocommit=True) as conn:
        n = conn.execute("SELECT COUNT(*) FROM similarity.images WHERE collection = 'grow'"
                         ).fetchone()[0]
    assert n == 26
    record = json.loads(next((own_site.resdir / "data" / "models").glob("m*.json")).read_text())
    assert {"model_id", "name", "collection"} <= set(record)


@pytest.mark.parametrize("name", ["", "a b", "../x", "x'y", "-x", "é"])
def test_bad_collection_names_are_refused_by_ingest(tmp_path, name):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vo_similarity", "ingest", str(tmp_path / "w"),
         "--synthetic", "2", f"--collection={name}"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "cannot name a collection" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_client_and_page_restrict_to_a_collection(own_site, tmp_path):
    """ADQL by collection, the client's ``collection=`` and model names, the page's lookups."""
    import requests
    from astroquery.exceptions import InvalidQueryError

    from vo_similarity.client import SimilarityClass

    # the same obs_ids, targets and positions, other DIDs (another authority)
    one = _as_collection(make_sample_workdir(tmp_path / "one", n=20, k=5, models=("sample",),
                                             seed=11, authority="one.example"), "one")
    two = _as_collection(make_sample_workdir(tmp_path / "two", n=20, k=5, models=("sample",),
                                             seed=11, authority="two.example"), "two")
    _publish(own_site, one)
    _publish(own_site, two)
    ids = {c: published_models(own_site)[(c, "sample")] for c in ("one", "two")}
    client = SimilarityClass(server=own_site.url)
    assert {"one", "two"} <= set(client.list_collections())

    with pytest.raises(InvalidQueryError, match="several collections have a model 'sample'"):
        client.query_outliers(model="sample", get_query_payload=True)
    assert str(ids["two"]) in client.query_outliers(model="two/sample", get_query_payload=True)
    with pytest.raises(InvalidQueryError, match="unknown collection 'three'"):
        client.query_region("10 20", radius=1 * u.deg, collection="three")

    from vo_similarity.ingest.manifest import read_manifest

    row = read_manifest(one.manifest)[0]
    centre = f"{row['s_ra']} {row['s_dec']}"
    both = client.query_region(centre, radius=0.01 * u.deg)
    assert {str(c) for c in both["obs_collection"]} >= {"one", "two"}
    only = client.query_region(centre, radius=0.01 * u.deg, collection="two")
    assert {str(c) for c in only["obs_collection"]} == {"two"} and len(only)
    assert {str(d) for d in only["obs_publisher_did"]} == \
        {str(d) for d in both["obs_publisher_did"] if "//two.example/" in str(d)}
    near = client.query_region(centre, radius=0.01 * u.deg, neighbours=2, model=ids["one"])
    assert len(near) and all("//one.example/" in str(d) for d in near["obs_publisher_did"])

    # no model named: each image's neighbours by its own collection's default model,
    # the rows of similarity.similar (the lowest model_id overall is another collection's)
    import pyvo

    tap = pyvo.dal.TAPService(f"{own_site.url}/tap")
    for collection in ("one", "two"):
        did = f"ivo://{collection}.example/~?sample-000003"
        adql = client.query_similar(did, n=4, get_query_payload=True)
        assert "IN (SELECT MIN(m.model_id)" in adql, adql
        got = client.query_similar(did, n=4)
        assert set(got["model_id"]) == {ids[collection]}
        short = tap.run_sync(f"SELECT TOP 4 * FROM similarity.similar WHERE query_did = "
                             f"'{did}' ORDER BY rank").to_table()
        assert [str(d) for d in got["obs_publisher_did"]] == \
            [str(d) for d in short["obs_publisher_did"]] and len(got) == 4
    around = client.query_region(centre, radius=0.01 * u.deg, neighbours=2)
    assert {int(m) for m in around["model_id"]} == {ids["one"], ids["two"]}
    for m, did in zip(around["model_id"], around["query_did"]):
        assert f"//{'one' if m == ids['one'] else 'two'}.example/" in str(did)
    by_obs_id = client.query_similar("sample-000003", n=4)
    assert len(by_obs_id) == 4 and len(set(by_obs_id["model_id"])) == 1
    assert f"model_id = {ids['two']}" in client.query_similar(
        "sample-000003", n=4, model="two/sample", get_query_payload=True)

    # an obs_id names the image of the model's collection: the page, the search service
    api = f"{own_site.url}/similarity/q/web/custom/api"
    for collection in ("one", "two"):
        reply = requests.get(f"{api}/neighbours", timeout=30, params={
            "id": "sample-000000", "model": ids[collection], "n": 3}).json()
        assert reply["query"]["obs_publisher_did"] == \
            f"ivo://{collection}.example/~?sample-000000", reply
        found = requests.get(f"{api}/lookup", timeout=30, params={
            "target": str(row["target_name"]), "model": ids[collection]}).json()["images"]
        assert found and all(f"//{collection}.example/" in im["obs_publisher_did"]
                             for im in found)
        hits = _search(own_site, model=ids[collection], n=3, similar="sample-000001")
        assert all(f"//{collection}.example/" in r["obs_publisher_did"]
                   for r in hits["results"])
    config = requests.get(f"{api}/config", timeout=30).json()
    assert {(m["model_id"], m["collection"]) for m in config["models"]} >= \
        {(ids["one"], "one"), (ids["two"], "two")}
