"""Benchmark of publishing neighbours in DaCHS (issue 5).

Measures, on a scratch DaCHS instance of its own (vo_similarity.publish.scratch;
``--gavo-rc FILE`` names an existing DaCHS instead):

* load rate of `vo-similarity publish`'s neighbour load (binary COPY into a
  staging partition, index, swap), in neighbour rows per second;
* bytes per neighbour row on disk, index and TOAST included, for the chosen
  layout (one row per image with arrays) and, for comparison, a heap with one
  row per neighbour under a BRIN or a B-tree index;
* median and 95th percentile of the top-20 ADQL join over TAP (sync, keep-alive)
  beside a trivial TAP query's (DaCHS's floor), and of the short form on the
  view ``similarity.similar`` (target: median <= 1.5 x the trivial query's),
  and of the same on ``similarity.similar_by_model`` with ``AND model_id``,
  the four taking turns;
* with 8 concurrent clients running the join during a republish, the number of
  errors and of answers that are neither the old nor the new set.

Usage::

    .venv/bin/python benchmarks/publish.py                 # 10^7 rows (k = 1000)
    .venv/bin/python benchmarks/publish.py --rows 1000000  # quicker

With ``--gavo-rc``, it replaces what is published there with a synthetic
sample; by default it leaves the operator's DaCHS alone.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from vo_similarity.publish.copy import COPY_HEADER, COPY_TRAILER, load_model_partition
from vo_similarity.publish.dachs import DachsSite
from vo_similarity.publish.publisher import publish
from vo_similarity.publish.sample import make_sample_workdir
from vo_similarity.publish.scratch import ScratchDachs

JOIN = ("SELECT TOP 20 n.rank, n.dist, o.obs_publisher_did, o.target_name, o.s_ra, o.s_dec, "
        "o.access_url FROM similarity.neighbours AS n "
        "JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did "
        "WHERE n.image_id = {image} AND n.model_id = {model} AND n.rank <= 20 ORDER BY rank")
TRIVIAL = "SELECT TOP 1 model_id FROM similarity.models"
#: the short form, the printed query (the collection's default model)
SHORT = "SELECT TOP 20 * FROM similarity.similar WHERE query_did = '{did}' ORDER BY rank"
#: the same with the model named: one comparison more for DaCHS to parse
SHORT_MODEL = ("SELECT TOP 20 * FROM similarity.similar_by_model WHERE query_did = '{did}' "
               "AND model_id = {model} ORDER BY rank")
#: the short form's target: its TAP median at most this times the trivial query's
SHORT_TARGET = 1.5


def tap_sync(session, url: str, query: str) -> str:
    r = session.post(f"{url}/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL",
                                              "QUERY": query, "FORMAT": "csv"}, timeout=60)
    r.raise_for_status()
    if r.text.lstrip().startswith("<"):  # DaCHS sends errors as VOTable with status 200
        raise RuntimeError(r.text[:300])
    return r.text


def latencies(url: str, queries: list[str]) -> list[float]:
    import requests

    times = []
    with requests.Session() as s:
        tap_sync(s, url, queries[0])  # warm the connection
        for q in queries:
            t0 = time.perf_counter()
            tap_sync(s, url, q)
            times.append(time.perf_counter() - t0)
    return times


def interleaved(url: str, queries: dict[str, list[str]]) -> dict[str, list[float]]:
    """Seconds per query, the kinds taking turns (so load on a shared machine
    falls on all of them alike)."""
    import requests

    times: dict[str, list[float]] = {name: [] for name in queries}
    with requests.Session() as s:
        for name, qs in queries.items():
            tap_sync(s, url, qs[0])  # warm the connection and DaCHS's caches
        for i in range(min(len(qs) for qs in queries.values())):
            for name, qs in queries.items():
                t0 = time.perf_counter()
                tap_sync(s, url, qs[i])
                times[name].append(time.perf_counter() - t0)
    return times


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def heap_layout_sizes(conn, ids: np.ndarray, nb: np.ndarray, dist: np.ndarray) -> dict:
    """Load one row per neighbour into a scratch heap; size with BRIN and B-tree."""
    n, k = nb.shape
    rows = np.zeros(n * k, dtype=[("nf", ">i2"), ("l1", ">i4"), ("image", ">i4"),
                                  ("l2", ">i4"), ("nb", ">i4"), ("l3", ">i4"), ("dist", ">f4"),
                                  ("l4", ">i4"), ("model", ">i2"), ("l5", ">i4"),
                                  ("rank", ">i2")])
    order = np.argsort(ids)
    rows["nf"], rows["l1"], rows["l2"], rows["l3"], rows["l4"], rows["l5"] = 5, 4, 4, 4, 2, 2
    rows["image"] = np.repeat(ids[order], k)
    rows["nb"] = nb[order].ravel()
    rows["dist"] = dist[order].ravel()
    rows["model"] = 1
    rows["rank"] = np.tile(np.arange(1, k + 1), n)
    result = {}
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS public.bench_heap")
        conn.execute("CREATE TABLE public.bench_heap (image_id integer, neighbour_id integer, "
                      "dist real, model_id smallint, rank smallint)")
        t0 = time.perf_counter()
        with conn.cursor().copy("COPY public.bench_heap FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(COPY_HEADER)
            step = 1_000_000
            for start in range(0, len(rows), step):
                copy.write(rows[start:start + step].tobytes())
            copy.write(COPY_TRAILER)
        result["heap_copy_rows_per_s"] = n * k / (time.perf_counter() - t0)
    heap = conn.execute("SELECT pg_total_relation_size('public.bench_heap')").fetchone()[0]
    result["heap_bytes_per_row"] = heap / (n * k)
    layouts = {
        "brin": ("CREATE INDEX bench_heap_i ON public.bench_heap USING brin "
                 "(model_id, image_id) WITH (pages_per_range = 8)"),
        "btree": "CREATE INDEX bench_heap_i ON public.bench_heap (model_id, image_id, rank)",
    }
    for kind, ddl in layouts.items():
        conn.execute("DROP INDEX IF EXISTS public.bench_heap_i")
        t0 = time.perf_counter()
        conn.execute(ddl)
        result[f"{kind}_index_s"] = time.perf_counter() - t0
        conn.execute("ANALYZE public.bench_heap")
        total = conn.execute("SELECT pg_total_relation_size('public.bench_heap')").fetchone()[0]
        result[f"heap_{kind}_bytes_per_row"] = total / (n * k)
        times = []
        for image in np.random.default_rng(0).choice(ids, 50):
            t0 = time.perf_counter()
            conn.execute("SELECT neighbour_id, dist FROM public.bench_heap WHERE model_id = 1 "
                         "AND image_id = %s AND rank <= 20 ORDER BY rank", (int(image),)).fetchall()
            times.append(time.perf_counter() - t0)
        result[f"heap_{kind}_top20_sql_ms"] = 1000 * statistics.median(times)
    conn.execute("DROP TABLE public.bench_heap")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=float, default=1e7, help="neighbour rows (default 1e7)")
    parser.add_argument("--k", type=int, default=1000, help="neighbours per image")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip-heap", action="store_true", help="skip the heap layouts")
    parser.add_argument("--gavo-rc", metavar="FILE",
                        help="publish into this DaCHS (its settings file) instead of a scratch "
                             "instance; what it publishes is replaced")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.gavo_rc:
            site = DachsSite.from_config(args.gavo_rc)
        else:
            site = stack.enter_context(ScratchDachs.start()).site()
        site.check_running()
        run(args, site)


def run(args: argparse.Namespace, site: DachsSite) -> None:
    k, n = args.k, max(int(args.rows) // args.k, args.k + 1)
    print(f"# publish benchmark: {n} images x k={k} = {n * k:,} neighbour rows on {site.url}")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        work = make_sample_workdir(Path(tmp) / "work", n=n, k=k, models=("bench",), dim=32)
        print(f"sample made in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        report = publish(work, site, ["bench"], progress=False)
        total = time.perf_counter() - t0
        m = report.models[0]
        print(f"load (COPY + index + swap): {m.rows:,} rows in {m.load_s:.2f} s = "
              f"{m.rows_per_s / 1e6:.2f} M rows/s (target >= 0.8); swap held locks "
              f"{m.swap_s * 1000:.0f} ms; whole publish incl. dachs imp/-m/limits {total:.0f} s")

        model = work.model("bench")
        ids = np.load(model.embedding_ids)
        nb = np.load(model.neighbour_ids)
        dist = np.load(model.neighbour_dist)
        mid = m.model_id
        with site.connect(autocommit=True) as conn:
            size = conn.execute(
                "SELECT pg_total_relation_size(%s)", (f"similarity.neighbour_sets_m{mid}",)
            ).fetchone()[0]
            print(f"chosen layout (arrays, one row per image, unique B-tree): "
                  f"{size / m.rows:.2f} bytes/row ({size / 2**20:.0f} MiB)")
            if not args.skip_heap:
                for key, value in heap_layout_sizes(conn, ids, nb, dist).items():
                    print(f"  {key}: {value:,.2f}")

        rng = np.random.default_rng(1)
        join = [JOIN.format(image=int(i), model=mid) for i in rng.choice(ids, args.queries)]
        tj = latencies(site.url, join)
        tt = latencies(site.url, [TRIVIAL] * args.queries)
        print(f"top-20 ADQL join over TAP: median {1000 * statistics.median(tj):.1f} ms, "
              f"p95 {1000 * pct(tj, 95):.1f} ms; trivial TAP query: median "
              f"{1000 * statistics.median(tt):.1f} ms, p95 {1000 * pct(tt, 95):.1f} ms "
              f"({args.queries} queries each)")
        dids = [f"ivo://vo-similarity.example/~?sample-{int(i):06d}"
                for i in rng.choice(ids, args.queries)]
        t = interleaved(site.url, {
            "short": [SHORT.format(did=d) for d in dids],
            "short_model": [SHORT_MODEL.format(did=d, model=mid) for d in dids],
            "join": [JOIN.format(image=int(i), model=mid) for i in rng.choice(ids, args.queries)],
            "trivial": [TRIVIAL] * args.queries})
        med = {name: 1000 * statistics.median(v) for name, v in t.items()}
        print(f"interleaved: short form (similarity.similar) median {med['short']:.1f} ms, "
              f"p95 {1000 * pct(t['short'], 95):.1f} ms; similar_by_model with AND "
              f"model_id {med['short_model']:.1f} ms; long join median {med['join']:.1f} ms; "
              f"trivial median {med['trivial']:.1f} ms; short/trivial "
              f"{med['short'] / med['trivial']:.2f} (target <= {SHORT_TARGET})")

        # Republish (different neighbours) while clients query.
        new_nb, new_dist = np.roll(nb, 1, axis=1), np.roll(dist, 1, axis=1)
        row_of = {int(i): r for r, i in enumerate(ids)}
        errors, mixed, answers = [], [0], [0]
        stop = threading.Event()

        def client(seed: int) -> None:
            import requests

            local = np.random.default_rng(seed)
            with requests.Session() as s:
                while not stop.is_set():
                    image = int(local.choice(ids))
                    try:
                        text = tap_sync(s, site.url, JOIN.format(image=image, model=mid))
                    except Exception as exc:  # noqa: BLE001 -- count every failure
                        errors.append(repr(exc)[:200])
                        continue
                    got = [line.split(",")[2] for line in text.strip().splitlines()[1:]]
                    got_ids = [int(d.rsplit("-", 1)[1]) for d in got]
                    r = row_of[image]
                    if got_ids not in (list(nb[r, :20]), list(new_nb[r, :20])):
                        mixed[0] += 1
                    answers[0] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(2)
        with site.connect(autocommit=True) as conn:
            t0 = time.perf_counter()
            swap = load_model_partition(conn, mid, ids, new_nb, new_dist)
            reload_s = time.perf_counter() - t0
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        print(f"{args.clients} clients during a republish ({reload_s:.1f} s, swap "
              f"{swap * 1000:.0f} ms): {answers[0]} answers, {len(errors)} errors, "
              f"{mixed[0]} neither old nor new (target 0 and 0)")
        for e in errors[:5]:
            print("  error:", e)
        with site.connect(autocommit=True) as conn:  # leave the files' neighbours published
            load_model_partition(conn, mid, ids, nb, dist)


if __name__ == "__main__":
    main()
