"""A publish killed in the middle of its COPY leaves the previous set intact;
readers during a republish see the old or the new set, never an error."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from publish_helpers import MODELS, N_IMAGES, SNAPSHOT, K, model_id, run_publish

from vo_similarity.publish.copy import PAUSE_ENV, load_model_partition
from vo_similarity.publish.sample import make_sample_workdir
from vo_similarity.workdir import WorkDir

pytestmark = pytest.mark.dachs



def _copy_backends(conn) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'vo-similarity publish' "
        "AND query ILIKE 'COPY similarity.%'").fetchall()]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_sigkill_during_copy_keeps_the_published_rows(site, published, tmp_path):
    import pyvo

    with site.connect(autocommit=True) as conn:
        before = conn.execute(SNAPSHOT).fetchall()
        assert len(before) >= len(MODELS) * N_IMAGES
        # The same images (manifest, previews), new neighbours for "sample".
        other = WorkDir(tmp_path / "other")
        shutil.copytree(published.work.root, other.root,
                        ignore=shutil.ignore_patterns("galactic"))
        fresh = make_sample_workdir(tmp_path / "fresh", n=N_IMAGES, k=7, models=("sample",))
        for attr in ("embedding_ids", "neighbour_ids", "neighbour_dist", "outlier"):
            shutil.copyfile(getattr(fresh.model("sample"), attr),
                            getattr(other.model("sample"), attr))
        proc = subprocess.Popen(
            [sys.executable, "-m", "vo_similarity", "publish", "--quiet", str(other.root),
             "--no-metadata"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, PAUSE_ENV: "120"})
        try:
            backends = _wait(lambda: _copy_backends(conn), 60, "the publish's COPY")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        # PostgreSQL rolls back when it notices the client is gone.
        _wait(lambda: not set(backends) & set(_copy_backends(conn))
              and not conn.execute(
                  "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (backends,)).fetchone(),
              30, "the killed publish's backend to end")
        assert conn.execute(SNAPSHOT).fetchall() == before
        leftovers = conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'neighbour_sets_m%%_stage'").fetchall()
        assert leftovers == []

    table = pyvo.dal.TAPService(site.tap_url).run_sync(
        f"SELECT COUNT(*) AS n FROM similarity.neighbours WHERE model_id = "
        f"{model_id(site, 'sample')}").to_table()
    assert int(table["n"][0]) == N_IMAGES * K


def test_readers_never_fail_during_a_republish(site, published):
    import numpy as np
    import pyvo

    tap = pyvo.dal.TAPService(site.tap_url)
    mid = model_id(site, "galactic")
    model = published.work.model("galactic")
    ids = np.load(model.embedding_ids)
    nb, dist = np.load(model.neighbour_ids), np.load(model.neighbour_dist)
    outlier = np.load(model.outlier)
    image = int(ids[4])
    query = (f"SELECT n.rank, n.neighbour_id FROM similarity.neighbours AS n "
             f"JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did "
             f"WHERE n.image_id = {image} AND n.model_id = {mid} ORDER BY rank")
    old = [int(x) for x in nb[4]]
    new = old[::-1]  # the republished set: the same neighbours, rank order reversed
    errors: list[str] = []
    seen = {"old": 0, "new": 0}
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                got = [int(x) for x in tap.run_sync(query).to_table()["neighbour_id"]]
            except Exception as exc:  # noqa: BLE001 -- every failure counts
                errors.append(repr(exc))
                continue
            if got == old:
                seen["old"] += 1
            elif got == new:
                seen["new"] += 1
            else:
                errors.append(f"mixed answer: {got}")

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with site.connect(autocommit=True) as conn:
            for _ in range(3):  # swap the new set in and the old one back, repeatedly
                time.sleep(1)
                load_model_partition(conn, mid, ids, nb[:, ::-1], dist[:, ::-1], outlier)
                time.sleep(1)
                # the published set as it was, outlier scores included, for the other tests
                load_model_partition(conn, mid, ids, nb, dist, outlier)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert seen["old"] > 0 and seen["new"] > 0, seen


def test_a_second_concurrent_publish_stops_and_changes_nothing(site, published):
    from vo_similarity.publish.copy import PUBLISH_LOCK

    with site.connect(autocommit=True) as holder, site.connect(autocommit=True) as conn:
        before = conn.execute(SNAPSHOT).fetchall()
        assert holder.execute("SELECT pg_try_advisory_lock(%s, 0)", (PUBLISH_LOCK,)).fetchone()[0]
        try:
            proc = run_publish(str(published.work.root), check=False)
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s, 0)", (PUBLISH_LOCK,))
        assert proc.returncode == 1
        assert "another publish is running" in proc.stderr
        assert conn.execute(SNAPSHOT).fetchall() == before
