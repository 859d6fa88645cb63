"""Benchmark of the search service (similarity/q/search/api) at 10^5 and 10^6 images.

On a scratch DaCHS of its own (vo_similarity.publish.scratch; never the
operator's instance):

1. a small sample is published with ``vo-similarity publish`` (the RD, the
   tables, the service);
2. per N, N random unit vectors of dimension 256 are published as a model the
   way publish does it -- the vector file written by
   :func:`vo_similarity.publish.vectors.stage_vectors`, swapped in with
   :func:`vo_similarity.publish.copy.swap_in` (which names it in
   ``similarity.vector_files``), the model's row imported by ``dachs imp`` --
   except that the neighbour table gets one dummy neighbour per image (exact
   neighbours of 10^6 images are hours of CPU here) and the N image rows are
   inserted by SQL (the service only reads their ids and names);
3. the DaCHS server is pinned to one CPU (``taskset -a -p -c 0`` on all its
   threads; threads it starts later inherit the mask) and started with
   ``OPENBLAS_NUM_THREADS=1`` (``--server-blas-threads``): one core means one
   BLAS thread, and OpenBLAS's default of a thread per CPU would put two
   threads on that one core, waiting for each other; the client runs on
   another, and the service is timed over one HTTP keep-alive connection
   (requests.Session), and with a new connection per request: a query vector,
   n = 20.  (DaCHS streams a core's reply from a thread and finishes the
   chunked response in a second write; on a reused connection that write can
   wait for the client's delayed ACK, up to 40 ms: see docs/search-service.md.);
4. the kernel's own time (read the mapped file, matrix-vector products, top n)
   is measured in DaCHS's Python on the same file, on one CPU with
   ``OPENBLAS_NUM_THREADS=1``: as the service runs it (a first pass over the
   one-byte codes, then the exact rescore), and beside it the plain float32
   scan of the vectors, which must give the same rows.

Target: p50 <= 100 ms at N = 10^6 on one core.

Usage::

    .venv/bin/python benchmarks/vector_search.py [--sizes 100000 1000000] [--queries 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vo_similarity.publish import resdir as rd
from vo_similarity.publish.collections import DEFAULT_COLLECTION
from vo_similarity.publish.copy import stage_model, swap_in
from vo_similarity.publish.dachs import RD_ID, DachsSite
from vo_similarity.publish.publisher import publish
from vo_similarity.publish.sample import make_sample_workdir
from vo_similarity.publish.scratch import ScratchDachs
from vo_similarity.publish.vectors import stage_vectors
from vo_similarity.workdir import WorkDir

DIM, TARGET_MS = 256, 100.0
SERVER_CPU, CLIENT_CPU = 0, 1

KERNEL_TIMING = r"""
import importlib.util, json, sys, time
import numpy as np
spec = importlib.util.spec_from_file_location("k", sys.argv[1])
k = importlib.util.module_from_spec(spec); spec.loader.exec_module(k)
vf = k.open_vectors(sys.argv[2])
rng = np.random.default_rng(1)
times = {"codes": [], "scan": []}
for i in range(int(sys.argv[3]) + 3):
    q = rng.normal(size=vf.dim); q = (q / np.linalg.norm(q)).astype(np.float32)
    t0 = time.perf_counter(); got = vf.top_n(q, 20); t = time.perf_counter() - t0
    t1 = time.perf_counter(); ref = k.top_n(vf.vectors, q, 20); t1 = time.perf_counter() - t1
    assert vf.coded is not None and (got[0] == ref[0]).all(), "the two passes disagree"
    if i >= 3:
        times["codes"].append(t)
        times["scan"].append(t1)
print(json.dumps(times))
"""


def pct(values, p: float) -> float:
    return 1000 * float(np.percentile(values, p))


def random_units(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def add_images(conn, n: int) -> None:
    """Image rows 0..n-1 (those the sample has are kept)."""
    conn.execute(
        "INSERT INTO similarity.images (image_id, collection, obs_publisher_did, obs_id, credit) "
        "SELECT i, %s, 'ivo://vo-similarity.example/~?bench-' || i, 'bench-' || i, 'benchmark' "
        "FROM generate_series((SELECT MAX(image_id) + 1 FROM similarity.images), %s - 1) "
        "AS i", (DEFAULT_COLLECTION, n))
    conn.execute("ANALYZE similarity.images")


def publish_vectors(site: DachsSite, work: WorkDir, name: str, model_id: int,
                    vectors: np.ndarray) -> Path:
    """Publish ``vectors`` (rows = image ids) as model ``model_id``, as publish does."""
    n = len(vectors)
    model = work.model(name).ensure()
    model.config.write_text(json.dumps({"name": name, "category": "benchmark"}))
    ids = np.arange(n, dtype=np.int32)
    np.save(model.embeddings, vectors)
    np.save(model.embedding_ids, ids)
    staged = stage_vectors(site, model, model_id)
    with site.connect(autocommit=True) as conn:
        nb = ((ids + 1) % n).reshape(-1, 1)  # one dummy neighbour each
        stage_model(conn, model_id, ids, nb, np.ones((n, 1), np.float32))
        swap_in(conn, [model_id], vector_files={model_id: staged})
    rd.write_model(site, model, model_id, n, 1, collection=DEFAULT_COLLECTION, dim=DIM)
    site.run("imp", RD_ID, "import_models")
    return site.resdir / "data" / "vectors" / staged.file


def pin_server(site: DachsSite) -> int:
    pid = int((site.root / "state" / "web.pid").read_text().split()[0])
    subprocess.run(["taskset", "-a", "-p", "-c", str(SERVER_CPU), str(pid)], check=True,
                   capture_output=True)
    return pid


def time_service(site: DachsSite, model_id: int, queries: int, *, keep_alive: bool
                 ) -> list[float]:
    """Seconds per request: over one keep-alive connection, or a new one each."""
    import requests

    rng = np.random.default_rng(2)
    url = f"{site.url}/similarity/q/search/api"
    times = []
    with requests.Session() as s:
        for i in range(queries + 3):  # the first ones fault the mapped pages in
            v = rng.normal(size=DIM)
            data = {"model": model_id, "n": 20, "vector": ",".join(f"{x:.7g}" for x in v)}
            t0 = time.perf_counter()
            r = s.post(url, data=data, timeout=120,
                       headers=None if keep_alive else {"Connection": "close"})
            t = time.perf_counter() - t0
            reply = r.json()
            if "error" in reply or len(reply["results"]) != 20:
                raise RuntimeError(f"the service answered {r.text[:300]}")
            if i >= 3:
                times.append(t)
    return times


def time_kernel(site: DachsSite, path: Path, queries: int) -> dict[str, list[float]]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["taskset", "-c", str(SERVER_CPU), "/usr/bin/python3", "-c", KERNEL_TIMING,
         str(site.resdir / rd.KERNEL), str(path), str(queries)],
        capture_output=True, text=True, check=True, env=env, timeout=600)
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--server-blas-threads", type=int, default=1,
                        help="OPENBLAS_NUM_THREADS of the DaCHS server (0: OpenBLAS's default)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CPU})
    if args.server_blas_threads > 0:  # the server inherits this environment
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[name] = str(args.server_blas_threads)
    with ScratchDachs.start() as scratch, tempfile.TemporaryDirectory() as tmp:
        site = scratch.site()
        work = make_sample_workdir(Path(tmp) / "work", n=60, k=20, models=("sample",))
        publish(work, site, progress=False, refresh_metadata=False)
        pid = pin_server(site)
        print(f"# search service benchmark on {site.url}: D = {DIM}, n = 20, "
              f"{args.queries} queries per N over one keep-alive connection; DaCHS server "
              f"(pid {pid}) pinned to CPU {SERVER_CPU} with taskset -a, "
              f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
              f"client on CPU "
              f"{CLIENT_CPU}; kernel alone in /usr/bin/python3 on CPU {SERVER_CPU}, "
              "OPENBLAS_NUM_THREADS=1")
        with site.connect(autocommit=True) as conn:
            add_images(conn, max(args.sizes))
        for i, n in enumerate(sorted(args.sizes)):
            t0 = time.perf_counter()
            path = publish_vectors(site, work, f"bench{n}", 100 + i, random_units(n, DIM, n))
            made = time.perf_counter() - t0
            http = time_service(site, 100 + i, args.queries, keep_alive=True)
            fresh = time_service(site, 100 + i, args.queries, keep_alive=False)
            kernel = time_kernel(site, path, args.queries)
            codes, scan = kernel["codes"], kernel["scan"]
            print(f"N = {n:>9,}: new connection each p50 {pct(fresh, 50):6.1f} ms, p95 "
                  f"{pct(fresh, 95):6.1f} ms (target p50 <= {TARGET_MS:.0f} ms: "
                  f"{'met' if pct(fresh, 50) <= TARGET_MS else 'NOT met'}); keep-alive p50 "
                  f"{pct(http, 50):6.1f} ms, p95 {pct(http, 95):6.1f} ms; kernel alone p50 "
                  f"{pct(codes, 50):6.1f} ms, p95 {pct(codes, 95):6.1f} ms (the float32 "
                  f"scan instead: p50 {pct(scan, 50):6.1f} ms); "
                  f"file {path.stat().st_size / 2**20:.0f} MiB, published in {made:.0f} s",
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
