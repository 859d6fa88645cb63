"""Published model files (ONNX, digest, preprocessing) and the migration of an
older installation, on a DaCHS instance of this module's own (it publishes
other images than the session's sample)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from publish_helpers import SNAPSHOT, run_publish
from scratch_instances import register

from vo_similarity.publish.dachs import DachsSite
from vo_similarity.publish.sample import make_sample_workdir
from vo_similarity.publish.scratch import ScratchDachs
from vo_similarity.workdir import WorkDir

pytestmark = pytest.mark.dachs

N, SIZE = 30, 16
PREPROCESS = {"size": SIZE, "clip": [0.5, 99.9], "stretch": "asinh", "softening": 0.1,
              "preview_size": 256}


@pytest.fixture(scope="module")
def own_site(dachs_scratch) -> DachsSite:
    # dachs_scratch first: the session's instance must not be the one removed
    # as stale, and the suite's checks know about it
    with ScratchDachs.start() as scratch:
        register(scratch)
        yield scratch.site()


def _trained_workdir(root) -> WorkDir:
    """The sample's images with a manifest that records its preprocessing, a
    random model ("plain", no weights) and a trained one ("tiny")."""
    from vo_similarity.embed.embed import embed_workdir
    from vo_similarity.ingest.manifest import read_manifest, read_manifest_meta, write_manifest
    from vo_similarity.learn.config import TrainConfig
    from vo_similarity.learn.train import train
    from vo_similarity.neighbours.search import find_neighbours

    work = make_sample_workdir(root, n=N, k=5, models=("plain",), seed=2)
    table = read_manifest(work.manifest)
    meta = read_manifest_meta(work.manifest) | {"preprocess": PREPROCESS, "image_size": SIZE}
    write_manifest(work.manifest, [dict(zip(table.colnames, row)) for row in table], meta)
    np.save(work.pixels, np.random.default_rng(0).random((N, 1, SIZE, SIZE)).astype(np.float16))
    cfg = TrainConfig(name="tiny", width=4, image_size=SIZE, batch_size=10, epochs=1,
                      warmup_epochs=1, pool_rotations=2, precision="fp32", projection_dim=8)
    model = work.model("tiny")
    train(work, cfg, model, progress=False)
    vectors, ids = embed_workdir(work, "tiny", batch_size=10, progress=False)
    nb, dist = find_neighbours(vectors, ids, 5, backend="torch")
    np.save(model.neighbour_ids, nb)
    np.save(model.neighbour_dist, dist)
    return work


@pytest.fixture(scope="module")
def trained(own_site, tmp_path_factory) -> WorkDir:
    work = _trained_workdir(tmp_path_factory.mktemp("trained") / "work")
    run_publish(str(work.root), "--gavo-rc", str(own_site.settings))
    return work


def _models(site: DachsSite) -> dict[str, dict]:
    with site.connect(autocommit=True) as conn:
        cur = conn.execute("SELECT * FROM similarity.models")
        names = [d.name for d in cur.description]
        return {row[1]: dict(zip(names, row)) for row in cur.fetchall()}


def test_trained_model_is_served_as_onnx_with_its_digest(own_site, trained):
    import onnxruntime
    import requests

    rows = _models(own_site)
    tiny, plain = rows["tiny"], rows["plain"]
    assert plain["weights_url"] is None and plain["weights_sha256"] is None
    assert plain["dim"] == 16  # the sample's random embeddings
    assert json.loads(tiny["preprocess"]) == PREPROCESS == json.loads(plain["preprocess"])
    assert tiny["weights_url"].startswith(own_site.url + "/similarity/q/files/static/weights/")
    body = requests.get(tiny["weights_url"], timeout=30).content  # as a client gets it
    assert hashlib.sha256(body).hexdigest() == tiny["weights_sha256"]
    session = onnxruntime.InferenceSession(body, providers=["CPUExecutionProvider"])
    pixels = np.load(trained.pixels)[:1].astype(np.float32)
    (out,) = session.run(["embedding"], {"images": pixels})
    assert out.shape == (1, tiny["dim"])
    np.testing.assert_allclose(np.linalg.norm(out), 1, atol=1e-5)
    # the same vector as the published embedding of image 0, within fp32 noise
    published = np.load(trained.model("tiny").embeddings)[0]
    assert float(out[0] @ published) > 1 - 1e-4


def test_unchanged_model_is_not_exported_again(own_site, trained):
    from vo_similarity.publish.model_files import weights_folder

    before = _models(own_site)["tiny"]
    files = {p.name: p.stat().st_mtime_ns for p in weights_folder(own_site).iterdir()}
    run_publish(str(trained.root), "--gavo-rc", str(own_site.settings), "--no-metadata")
    after = _models(own_site)["tiny"]
    assert (after["weights_url"], after["weights_sha256"]) == (
        before["weights_url"], before["weights_sha256"])
    assert {p.name: p.stat().st_mtime_ns for p in weights_folder(own_site).iterdir()} == files


def test_publish_migrates_an_older_models_table_and_keeps_everything(own_site, trained):
    from vo_similarity.publish.collections import DEFAULT_COLLECTION
    from vo_similarity.publish.migrate import MODEL_COLUMNS

    before = _models(own_site)
    with own_site.connect(autocommit=True) as conn:
        # what an installation published before these columns looks like: no
        # default-model view either (it reads models.collection)
        conn.execute("DROP VIEW similarity.similar")
        for column in MODEL_COLUMNS:
            conn.execute(f"ALTER TABLE similarity.models DROP COLUMN {column}")
        conn.execute("INSERT INTO similarity.selections (model_id, image_id, chosen_id, "
                     "is_similar, created) VALUES (1, 0, 1, true, now())")
        neighbours = conn.execute(SNAPSHOT).fetchall()
    for path in (own_site.resdir / "data" / "models").glob("*.json"):
        record = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in record.items()
                                    if k not in MODEL_COLUMNS}))
    # an older publish of only one model: the other's row must survive too
    run_publish(str(trained.root), "--gavo-rc", str(own_site.settings), "--model", "tiny")
    after = _models(own_site)

    def without(row, *keys):
        return {k: v for k, v in row.items() if k not in ("created", *keys)}

    assert without(after["tiny"]) == without(before["tiny"])
    # a model not republished keeps every old column; the new ones were never
    # recorded for it (NULL) until it is published again, but its collection:
    # before collections, the server's one
    assert without(after["plain"], *MODEL_COLUMNS) == without(before["plain"], *MODEL_COLUMNS)
    assert all(after["plain"][c] is None for c in MODEL_COLUMNS if c != "collection")
    assert after["plain"]["collection"] == DEFAULT_COLLECTION
    run_publish(str(trained.root), "--gavo-rc", str(own_site.settings), "--no-metadata")
    assert {n: without(r) for n, r in _models(own_site).items()} == \
        {n: without(r) for n, r in before.items()}
    with own_site.connect(autocommit=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM similarity.selections").fetchone()[0] == 1
        assert conn.execute(SNAPSHOT).fetchall() == neighbours
        assert conn.execute("SELECT to_regclass('similarity.similar')").fetchone()[0]
    import pyvo

    table = pyvo.dal.TAPService(own_site.tap_url).run_sync(
        "SELECT name, dim, weights_url, weights_sha256, preprocess FROM similarity.models"
    ).to_table()
    assert sorted(map(str, table["name"])) == ["plain", "tiny"]
