"""Growth: 50 images added to a published 500; `update`, then `publish` sends only the
rows that changed, in one transaction that readers see whole or not at all."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from publish_helpers import run_publish
from scratch_instances import register
from tiny_work import make_workdir

from vo_similarity.cli import main
from vo_similarity.embed.embed import embed_workdir
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.train import train
from vo_similarity.neighbours.store import compute_model_neighbours, read_neighbour_changes
from vo_similarity.publish.copy import PAUSE_ENV
from vo_similarity.publish.dachs import DachsSite
from vo_similarity.publish.scratch import ScratchDachs

pytestmark = [pytest.mark.dachs, pytest.mark.slow]

N_OLD, N_NEW, K = 500, 50, 20
#: the manifest meta of an ingest at 16 px
META = {"collection": "grow", "image_size": 16, "preprocess": {"size": 16}}
ROWS = ("SELECT image_id, neighbour_ids, dists, outlier::text FROM similarity.neighbour_sets "
        "WHERE model_id = %s ORDER BY image_id")


@pytest.fixture(scope="module")
def own_site(dachs_scratch) -> DachsSite:
    with ScratchDachs.start() as scratch:
        register(scratch)
        yield scratch.site()


def _with_previews(work):
    from PIL import Image

    work.previews.mkdir(exist_ok=True)
    for i, image in enumerate(np.load(work.pixels)):
        Image.fromarray((np.asarray(image[0], np.float32) * 255).astype(np.uint8)).save(
            work.preview(i))
    return work


def _publish(site: DachsSite, work, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "vo_similarity", "publish", str(work.root), "--no-metadata",
         "--gavo-rc", str(site.settings), "--no-progress"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env})


def _rows(site: DachsSite, model_id: int) -> dict[int, tuple]:
    with site.connect(autocommit=True) as conn:
        return {r[0]: r[1:] for r in conn.execute(ROWS, (model_id,)).fetchall()}


def _xmin(site: DachsSite, model_id: int) -> dict[int, str]:
    with site.connect(autocommit=True) as conn:
        return dict(conn.execute(
            f"SELECT image_id, xmin::text FROM similarity.neighbour_sets_m{model_id}"
        ).fetchall())


def _file_rows(model) -> dict[int, tuple]:
    ids, nb = np.load(model.embedding_ids), np.load(model.neighbour_ids)
    dist, outlier = np.load(model.neighbour_dist), np.load(model.outlier)
    return {int(i): ([int(j) for j in nb[r]], [float(d) for d in dist[r]],
                     repr(float(outlier[r])))
            for r, i in enumerate(ids)}


def _same(published: dict[int, tuple], files: dict[int, tuple]) -> bool:
    return published.keys() == files.keys() and all(
        list(published[i][0]) == files[i][0]
        and np.array_equal(np.float32(published[i][1]), np.float32(files[i][1]))
        for i in files)


def test_update_then_publish_sends_only_the_changed_rows(own_site, tmp_path, capsys):
    from vo_similarity.ingest.manifest import read_manifest, write_manifest

    work = _with_previews(make_workdir(tmp_path / "work", n=N_OLD + N_NEW))
    everything = read_manifest(work.manifest)
    rows = [dict(zip(everything.colnames, r)) for r in everything]
    pixels = np.load(work.pixels)
    write_manifest(work.manifest, rows[:N_OLD], META)  # before the 50
    np.save(work.pixels, pixels[:N_OLD])
    model = work.model("tiny")
    cfg = TrainConfig(name="tiny", width=4, image_size=16, batch_size=64, epochs=1,
                      warmup_epochs=1, pool_rotations=2, precision="fp32", projection_dim=16)
    train(work, cfg, model, progress=False)
    embed_workdir(work, "tiny", batch_size=100, progress=False)
    compute_model_neighbours(model, K, progress=False)
    first = _publish(own_site, work)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, out + err
    assert "rows in" in out  # everything, the first time
    model_id = int(out.split("(model_id ")[1].split(")")[0])
    old = _rows(own_site, model_id)
    assert _same(old, _file_rows(model)) and len(old) == N_OLD
    old_xmin = _xmin(own_site, model_id)

    write_manifest(work.manifest, rows, META)  # ingest appended 50
    np.save(work.pixels, pixels)
    assert main(["update", str(work.root), "--model", "tiny", "--no-progress"]) == 0
    assert f"({N_NEW} new, 0 removed)" in capsys.readouterr().out
    changes = read_neighbour_changes(model)
    assert changes is not None and not len(changes.removed)
    assert set(range(N_OLD, N_OLD + N_NEW)) <= set(changes.changed.tolist())
    assert N_NEW < len(changes.changed) < N_OLD + N_NEW  # some old lists changed, not all

    # readers during the transaction see the old rows, all of them
    proc = _publish(own_site, work, **{PAUSE_ENV: "8"})
    deadline = time.monotonic() + 300
    with own_site.connect(autocommit=True) as conn:
        while not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = "
                "'vo-similarity publish' AND state = 'idle in transaction' "
                "AND query ILIKE 'COPY similarity.%%neighbour_sets_m%%'").fetchone():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the publish did not reach its transaction"
            time.sleep(0.05)
    assert _rows(own_site, model_id) == old
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    assert f"only the {len(changes.changed)} images whose lists changed" in out

    new = _rows(own_site, model_id)
    assert _same(new, _file_rows(model)) and len(new) == N_OLD + N_NEW
    xmin = _xmin(own_site, model_id)
    rewritten = {i for i in xmin if xmin[i] != old_xmin.get(i)}
    assert rewritten == set(changes.changed.tolist())  # the rows it must, no other
    assert all(new[i] == old[i] for i in old if i not in rewritten)

    # a full publication of the same files gives the same rows
    model.neighbour_changes.unlink()
    again = run_publish(str(work.root), "--no-metadata", "--gavo-rc", str(own_site.settings))
    assert "rows in" in again.stdout
    assert _rows(own_site, model_id) == new
