"""Benchmark: growing the neighbour lists with ``update`` against a full recomputation.

N old and M new clustered unit vectors (``benchmarks/knn.py``'s data), k
neighbours: the full ``find_neighbours`` over N + M, and
``update_neighbours`` from the stored lists of the N old ones (optionally with
R old images removed). Prints both times, their ratio, the work model's
expectation (M·(N + M) + R'·(N + M) products against (N + M)², R' the rows that
held a removed image) and whether the two results have the same ids.

    .venv/bin/python benchmarks/update.py                       # N=20,000, M=500, D=256, k=1000
    .venv/bin/python benchmarks/update.py --n 50000 --m 1000 --removed 100
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--m", type=int, default=500)
    parser.add_argument("--removed", type=int, default=0)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from knn import make_data

    from vo_similarity.neighbours.search import find_neighbours
    from vo_similarity.neighbours.update import update_neighbours

    torch.set_num_threads(args.threads)
    total = args.n + args.m
    x = make_data(total, args.d)
    ids = np.random.default_rng(1).permutation(10 * total)[:total]
    old = np.arange(args.n)
    print(f"# N = {args.n:,} old + M = {args.m:,} new, R = {args.removed} removed, "
          f"D = {args.d}, k = {args.k}, {args.threads} threads, load "
          f"{os.getloadavg()[0]:.1f}")
    stored = find_neighbours(x[old], ids[old], args.k)
    keep = np.arange(total)
    if args.removed:
        gone = np.random.default_rng(2).choice(args.n, args.removed, replace=False)
        keep = np.setdiff1d(keep, gone)
    t0 = time.perf_counter()
    full = find_neighbours(x[keep], ids[keep], args.k)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = update_neighbours(x[keep], ids[keep], ids[old], *stored, args.k)
    t_update = time.perf_counter() - t0
    n_now = len(keep)
    expected = (got.recomputed * n_now + (n_now - got.recomputed) * args.m) / n_now**2
    same = np.array_equal(got.neighbour_ids, full[0])
    differ = int((got.neighbour_ids != full[0]).any(axis=1).sum())
    print(f"full recomputation {t_full:.2f} s; update {t_update:.2f} s "
          f"({got.recomputed} rows in full, {int(got.changed.sum())} lists changed): "
          f"{t_update / t_full:.3f} of the full time, products {expected:.3f} of it; "
          f"same ids: {same} ({differ} rows differ, where two distances tie in float32)")


if __name__ == "__main__":
    main()
