"""Against the real DaCHS: the ADQL join returns exactly the index files' neighbours."""

from __future__ import annotations

import csv
import io
import urllib.request

import numpy as np
import pytest
from astropy.table import Table
from publish_helpers import MODELS, N_IMAGES, K, model_id, run_publish, stilts

pytestmark = pytest.mark.dachs


def _expected(work, name: str, image_id: int):
    """DIDs and distances of ``image_id``'s neighbours from the model's files."""
    model = work.model(name)
    ids = np.load(model.embedding_ids)
    row = int(np.flatnonzero(ids == image_id)[0])
    manifest = Table.read(work.manifest, format="ascii.ecsv")
    did = dict(zip(manifest["image_id"], manifest["obs_publisher_did"]))
    nb = np.load(model.neighbour_ids)[row]
    return did[image_id], [did[i] for i in nb], np.load(model.neighbour_dist)[row]


def _join(did: str, mid: int) -> str:
    return ("SELECT n.rank, n.dist, o.obs_publisher_did, o.s_ra FROM similarity.neighbours AS n "
            "JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did "
            f"WHERE n.obs_publisher_did = '{did}' AND n.model_id = {mid} ORDER BY rank")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("image_id", [0, 17, N_IMAGES - 1])
def test_join_through_pyvo_equals_index_files(site, published, name, image_id):
    import pyvo

    did, nb_dids, dists = _expected(published.work, name, image_id)
    result = pyvo.dal.TAPService(site.tap_url).run_sync(_join(did, model_id(site, name)))
    table = result.to_table()
    assert list(table["rank"]) == list(range(1, K + 1))
    assert [str(x) for x in table["obs_publisher_did"]] == nb_dids
    np.testing.assert_array_equal(np.asarray(table["dist"], np.float32), dists)


def test_join_through_stilts_equals_index_files(site, published):
    did, nb_dids, dists = _expected(published.work, "galactic", 5)
    out = stilts("tapquery", f"tapurl={site.tap_url}", "sync=true", "ofmt=csv",
                 f"adql={_join(did, model_id(site, 'galactic'))}")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["rank"]) for r in rows] == list(range(1, K + 1))
    assert [r["obs_publisher_did"] for r in rows] == nb_dids
    np.testing.assert_allclose([float(r["dist"]) for r in rows], dists, rtol=1e-6)


@pytest.mark.parametrize("hostile", [
    "ivo://x/~?o'brien",
    "x' OR 1=1 --",
    "'; DROP TABLE similarity.selections; --",
])
@pytest.mark.parametrize("model", [None, "galactic"])
def test_hostile_literal_is_a_harmless_string(site, published, hostile, model):
    import pyvo

    from vo_similarity.publish.queries import similar_images_query

    service = pyvo.dal.TAPService(site.tap_url)
    mid = None if model is None else model_id(site, model)
    result = service.run_sync(similar_images_query(hostile, mid))
    assert len(result) == 0  # no image has that DID; nothing was injected
    assert len(service.run_sync("SELECT TOP 1 * FROM similarity.selections").to_table().colnames)


def test_printed_query_runs_as_printed_in_stilts(site, published):
    out = stilts("tapquery", f"tapurl={site.tap_url}", "ofmt=csv", f"adql={published.query}")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 20 and rows[0]["rank"] == "1"
    assert all(r["access_url"].startswith(site.url) for r in rows)


def test_printed_stilts_command_runs_in_a_shell_as_printed(site, published):
    import shlex
    import subprocess

    line = next(x.strip() for x in published.stdout.splitlines()
                if x.strip().startswith("stilts tapquery "))
    argv = shlex.split(line)  # what a POSIX shell makes of the pasted line
    assert argv[-1] == f"adql={' '.join(published.query.split())}"
    out = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True,
                         stdin=subprocess.DEVNULL, timeout=300).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["rank"]) for r in rows] == list(range(1, 21))


def test_images_are_in_obscore_with_served_files(site, published):
    import pyvo

    table = pyvo.dal.TAPService(site.tap_url).run_sync(
        "SELECT obs_publisher_did, access_url, access_format, preview, s_ra, s_dec "
        "FROM ivoa.obscore WHERE obs_collection = 'vo-similarity'").to_table()
    assert len(table) == N_IMAGES
    manifest = Table.read(published.work.manifest, format="ascii.ecsv")
    assert sorted(map(str, table["obs_publisher_did"])) == sorted(manifest["obs_publisher_did"])
    for row in table[:6]:
        with urllib.request.urlopen(str(row["access_url"]), timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Type"] == str(row["access_format"])
        with urllib.request.urlopen(str(row["preview"]), timeout=10) as r:
            assert r.read(8) == b"\x89PNG\r\n\x1a\n"


def test_models_live_side_by_side_and_republish_replaces_one(site, published, tmp_path):
    import pyvo

    from vo_similarity.publish.sample import make_sample_workdir

    tap = pyvo.dal.TAPService(site.tap_url)
    models = tap.run_sync("SELECT name, model_id, k, n_images, hyperparameters "
                          "FROM similarity.models").to_table()
    assert set(MODELS) <= set(map(str, models["name"]))
    count = ("SELECT model_id, COUNT(*) AS n FROM similarity.neighbours GROUP BY model_id")
    before = {int(r["model_id"]): int(r["n"]) for r in tap.run_sync(count).to_table()}
    sample, galactic = model_id(site, "sample"), model_id(site, "galactic")
    assert before[sample] == before[galactic] == N_IMAGES * K

    # New neighbours for "sample" only, same images, k = 7 instead of K.
    other = make_sample_workdir(tmp_path / "other", n=N_IMAGES, k=7, models=("sample",), seed=5)
    work = published.work
    for attr in ("embedding_ids", "neighbour_ids", "neighbour_dist", "outlier"):
        getattr(work.model("sample"), attr).write_bytes(
            getattr(other.model("sample"), attr).read_bytes())
    try:
        out = run_publish(str(work.root), "--model", "sample", "--no-metadata").stdout
        assert "images: unchanged" in out
        after = {int(r["model_id"]): int(r["n"]) for r in tap.run_sync(count).to_table()}
        assert after[sample] == N_IMAGES * 7 and after[galactic] == before[galactic]
        assert model_id(site, "sample") == sample
        did, nb_dids, _ = _expected(work, "sample", 3)
        got = tap.run_sync(_join(did, sample)).to_table()
        assert [str(x) for x in got["obs_publisher_did"]] == nb_dids
    finally:  # put the session's sample back for the other tests
        for attr in ("embedding_ids", "neighbour_ids", "neighbour_dist", "outlier"):
            getattr(work.model("sample"), attr).unlink()
        fresh = make_sample_workdir(tmp_path / "fresh", n=N_IMAGES, k=K, models=MODELS, seed=5)
        for attr in ("embedding_ids", "neighbour_ids", "neighbour_dist", "outlier"):
            getattr(work.model("sample"), attr).write_bytes(
                getattr(fresh.model("sample"), attr).read_bytes())
        run_publish(str(work.root), "--model", "sample", "--no-metadata")


def test_incomplete_workdir_is_a_clear_error(site, tmp_path):
    proc = run_publish(str(tmp_path / "nothing"), check=False)
    assert proc.returncode == 1
    assert "incomplete" in proc.stderr and "no manifest" in proc.stderr
