"""``vo-similarity neighbours``: exact top-k neighbours of every image of a model.

Light module: heavy imports happen inside :func:`run`.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdir", metavar="WORKDIR", help="the work directory")
    parser.add_argument("--model", required=True, help="model name (folder under WORKDIR/models)")
    parser.add_argument("--k", type=int, default=1000,
                        help="neighbours per image (default 1000; N-1 when fewer images)")
    parser.add_argument("--block-size", type=int, default=1024,
                        help="query rows per block (default 1024)")
    parser.add_argument("--column-block-size", type=int, default=65536,
                        help="database rows per block; a block holds block-size x this "
                             "float32 similarities (default 65536)")
    parser.add_argument("--backend", choices=("auto", "torch", "cuml", "sklearn"),
                        default="auto", help="k-NN implementation (default auto: torch, on "
                        "a GPU when one is usable)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu, cuda, cuda:1 (default: GPU if usable)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="matrix-product precision; bf16/fp16 are re-ranked exactly in "
                             "float32, so the result is the same (default fp32)")
    parser.add_argument("--outlier-neighbours", type=int, default=10, metavar="M",
                        help="outlier score = mean distance to the M nearest (default 10)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from vo_similarity.neighbours.store import compute_model_neighbours
    from vo_similarity.workdir import WorkDir

    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    model = WorkDir(args.workdir).model(args.model)
    start = time.perf_counter()
    try:
        summary = compute_model_neighbours(
            model, args.k, outlier_neighbours=args.outlier_neighbours,
            progress=not args.no_progress, backend=args.backend, device=args.device,
            precision=args.precision, block_size=args.block_size,
            column_block_size=args.column_block_size)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vo-similarity neighbours: {exc}", file=sys.stderr)
        return 1
    print(f"{summary.n_images} images, {summary.k} neighbours each, "
          f"{time.perf_counter() - start:.1f} s")
    for path in summary.files:
        print(f"  {path}")
    return 0
