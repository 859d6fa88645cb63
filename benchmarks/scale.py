"""Benchmark: what each stage costs as the archive grows (issue 14).

For each N (default 10^4 and 10^5), in a work directory of its own and on a
scratch DaCHS of its own (vo_similarity.publish.scratch; never the operator's
instance), the stages run as an operator runs them, each as its own process
(``python -m vo_similarity ...``), so that its wall time and peak resident
memory (``ru_maxrss`` from ``os.wait4``) are its own:

1. ``ingest WORK --synthetic N --size 64 --seed N --collection scale-N``
   (FITS files of the synthetic ALMA-like sky written and read back);
2. the shipped checkpoint installed as model ``builtin``
   (:func:`vo_similarity.learn.pretrained.install_shipped`), then
   ``embed WORK -m builtin``;
3. ``neighbours WORK -m builtin --k K`` (the time it prints, from loading the
   embeddings to writing the lists, beside the process's wall time);
4. ``publish WORK -m builtin`` into the scratch DaCHS.

Each N is its own collection (``scale-N``, seed N: distinct DIDs), so all of
them stay published side by side.  After each publish: the size on disk of the
model's neighbour partition (table, TOAST and index) and of the whole
database, and the median and 95th percentile of the top-20 short form over TAP
(``SELECT TOP 20 * FROM similarity.similar WHERE query_did = ... ORDER BY
rank``) for random query images, beside a trivial query.

Then, for each pair of consecutive N, each stage's growth exponent b in
t ∝ N^b, and the neighbour stage's time against N² scaling from the smaller N
(target of issue 14: within 10 % at 10^5 from 10^4).

Usage::

    .venv/bin/python benchmarks/scale.py                      # 10^4 and 10^5
    .venv/bin/python benchmarks/scale.py --sizes 10000 30000  # an hour less
    .venv/bin/python benchmarks/scale.py --sizes 2000 4000 --k 100   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vo_similarity.learn.pretrained import install_shipped
from vo_similarity.publish.dachs import DachsSite
from vo_similarity.publish.scratch import ScratchDachs
from vo_similarity.workdir import WorkDir

STAGES = ("ingest", "embed", "neighbours", "publish")
MODEL = "builtin"
_KNN_LINE = re.compile(r"(\d+) images, (\d+) neighbours each, ([0-9.]+) s")


def _load_publish_benchmark():
    """benchmarks/publish.py, for its TAP timing helpers (one way to time TAP)."""
    spec = importlib.util.spec_from_file_location("publish_benchmark",
                                                  Path(__file__).with_name("publish.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class StageRun:
    seconds: float
    peak_mib: float
    output: str


@dataclass
class SizeRun:
    n: int
    stages: dict[str, StageRun] = field(default_factory=dict)
    knn_seconds: float = math.nan
    partition_bytes: int = 0
    database_bytes: int = 0
    work_bytes: int = 0
    short_ms: tuple[float, float] = (math.nan, math.nan)
    trivial_ms: tuple[float, float] = (math.nan, math.nan)


def run_stage(argv: list[str], env: dict[str, str], log: Path) -> StageRun:
    """Run ``python -m vo_similarity ARGV``; its wall time and its own peak RSS."""
    cmd = [sys.executable, "-m", "vo_similarity", "--no-progress", *argv]
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if proc.returncode not in (0, 3):  # 3: finished, some inputs rejected
        raise SystemExit(f"{' '.join(argv[:2])} failed ({proc.returncode}):\n{text[-3000:]}")
    return StageRun(seconds, usage.ru_maxrss / 1024, text)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure_queries(site: DachsSite, collection: str, queries: int, bench) -> tuple:
    with site.connect(autocommit=True) as conn:
        (model_id,) = conn.execute(
            "SELECT model_id FROM similarity.models WHERE collection = %s AND name = %s",
            (collection, MODEL)).fetchone()
        dids = [r[0] for r in conn.execute(
            "SELECT obs_publisher_did FROM similarity.images WHERE collection = %s",
            (collection,)).fetchall()]
        partition = conn.execute("SELECT pg_total_relation_size(%s)",
                                 (f"similarity.neighbour_sets_m{model_id}",)).fetchone()[0]
        database = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    chosen = random.Random(0).sample(dids, min(queries, len(dids)))
    times = bench.interleaved(site.url, {
        "short": [bench.SHORT.format(did=d.replace("'", "''")) for d in chosen],
        "trivial": [bench.TRIVIAL] * len(chosen)})
    ms = {name: (1000 * bench.pct(t, 50), 1000 * bench.pct(t, 95)) for name, t in times.items()}
    return model_id, partition, database, ms["short"], ms["trivial"]


def run_size(n: int, args: argparse.Namespace, root: Path, site: DachsSite, env: dict,
             bench) -> SizeRun:
    work = root / f"n{n}"
    if work.exists():  # ingest would only add to it, and time that
        raise SystemExit(f"{work} exists: remove it or choose another --root")
    collection = f"scale-{n}"
    result = SizeRun(n)
    print(f"\n## N = {n:,} ({work})", flush=True)

    def stage(name: str, argv: list[str]) -> None:
        run = run_stage(argv, env, root / f"n{n}-{name}.log")
        result.stages[name] = run
        print(f"  {name}: {run.seconds:.1f} s, peak RSS {run.peak_mib:.0f} MiB", flush=True)

    stage("ingest", ["ingest", str(work), "--synthetic", str(n), "--size", str(args.size),
                     "--seed", str(n), "--collection", collection])
    install_shipped(WorkDir(work), MODEL)
    stage("embed", ["embed", str(work), "-m", MODEL])
    stage("neighbours", ["neighbours", str(work), "-m", MODEL, "--k", str(args.k)])
    found = _KNN_LINE.search(result.stages["neighbours"].output)
    if found:
        result.knn_seconds = float(found.group(3))
        print(f"    (the k-NN itself: {result.knn_seconds:.1f} s)")
    stage("publish", ["publish", str(work), "-m", MODEL])
    result.work_bytes = folder_bytes(work)
    _, result.partition_bytes, result.database_bytes, result.short_ms, result.trivial_ms = \
        measure_queries(site, collection, args.queries, bench)
    print(f"  neighbour partition {result.partition_bytes / 2**20:.0f} MiB "
          f"({result.partition_bytes / (n * min(args.k, n - 1)):.1f} bytes per neighbour row), "
          f"database {result.database_bytes / 2**20:.0f} MiB, work directory "
          f"{result.work_bytes / 2**20:.0f} MiB; top-20 short form p50 {result.short_ms[0]:.1f} ms "
          f"/ p95 {result.short_ms[1]:.1f} ms (trivial query {result.trivial_ms[0]:.1f} ms)",
          flush=True)
    if not args.keep:
        shutil.rmtree(work / "synthetic", ignore_errors=True)  # the FITS files: most of the disk
    return result


def report(runs: list[SizeRun], k: int) -> None:
    print(f"\n| N | rows (N·k) | {' | '.join(f'{s} [s] / peak [MiB]' for s in STAGES)} "
          "| k-NN itself [s] | partition [MiB] | database [MiB] | top-20 p50 / p95 [ms] "
          "| trivial p50 [ms] |")
    print("|---:|---:|" + "---:|" * (len(STAGES) + 5))
    for r in runs:
        cells = " | ".join(f"{r.stages[s].seconds:.1f} / {r.stages[s].peak_mib:.0f}"
                           for s in STAGES)
        print(f"| {r.n:,} | {r.n * min(k, r.n - 1):,} | {cells} | {r.knn_seconds:.1f} | "
              f"{r.partition_bytes / 2**20:.0f} | {r.database_bytes / 2**20:.0f} | "
              f"{r.short_ms[0]:.1f} / {r.short_ms[1]:.1f} | {r.trivial_ms[0]:.1f} |")
    for a, b in itertools.pairwise(runs):
        growth = math.log(b.n / a.n)
        parts = [f"{s} {math.log(b.stages[s].seconds / a.stages[s].seconds) / growth:.2f}"
                 for s in STAGES]
        parts.append(f"k-NN itself {math.log(b.knn_seconds / a.knn_seconds) / growth:.2f}")
        parts.append("peak memory " + ", ".join(
            f"{s} {math.log(b.stages[s].peak_mib / a.stages[s].peak_mib) / growth:.2f}"
            for s in STAGES))
        print(f"\nGrowth exponents b (t ∝ N^b) from N = {a.n:,} to {b.n:,}: " + "; ".join(parts))
        for label, ta, tb in (("neighbours stage", a.stages["neighbours"].seconds,
                               b.stages["neighbours"].seconds),
                              ("k-NN itself", a.knn_seconds, b.knn_seconds)):
            ratio = tb / (ta * (b.n / a.n) ** 2)
            verdict = "within 10 %: met" if abs(ratio - 1) <= 0.1 else "NOT within 10 %"
            print(f"  {label} at {b.n:,} against N² scaling from {a.n:,}: {ratio:.2f} "
                  f"({verdict})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="model image side [px]")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--root", type=Path, default=None,
                        help="where the work directories go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directories and their FITS files")
    args = parser.parse_args()
    print(f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"N = {', '.join(f'{n:,}' for n in args.sizes)}, k = {args.k}")
    bench = _load_publish_benchmark()
    runs: list[SizeRun] = []
    with contextlib.ExitStack() as stack:
        root = args.root or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="vo-similarity-scale-")))
        root.mkdir(parents=True, exist_ok=True)
        scratch = stack.enter_context(ScratchDachs.start())
        env = {**os.environ, **scratch.environ()}
        site = scratch.site()
        for n in args.sizes:
            runs.append(run_size(n, args, root, site, env, bench))
        report(runs, args.k)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
