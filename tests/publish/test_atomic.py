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
from publish_helpers import MODELS, N_IMAGES, K, model_id, run_publish

from vo_similarity.publish.copy import PAUSE_ENV
from vo_similarity.publish.sample import make_sample_workdir
from vo_similarity.workdir import WorkDir

pytestmark = pytest.mark.dachs

SNAPSHOT = ("SELECT model_id, image_id, outlier, neighbour_ids, dists "
            "FROM similarity.neighbour_sets ORDER BY model_id, image_id")


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
    import pyvo

    tap = pyvo.dal.TAPService(site.tap_url)
    mid = model_id(site, "galactic")
    query = (f"SELECT n.rank, o.obs_publisher_did FROM similarity.neighbours AS n "
             f"JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did "
             f"WHERE n.image_id = 4 AND n.model_id = {mid} ORDER BY rank")
    expected = [str(x) for x in tap.run_sync(query).to_table()["obs_publisher_did"]]
    errors: list[str] = []
    answers = [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                got = [str(x) for x in tap.run_sync(query).to_table()["obs_publisher_did"]]
                if got != expected:
                    errors.append(f"mixed or wrong answer: {got[:3]}...")
                answers[0] += 1
            except Exception as exc:  # noqa: BLE001 -- every failure counts
                errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # the same neighbours again: answers must stay identical throughout
        run_publish(str(published.work.root), "--model", "galactic", "--no-metadata")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert answers[0] > 0
    assert errors == []
