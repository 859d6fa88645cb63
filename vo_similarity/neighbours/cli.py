"""``vo-similarity neighbours``: exact top-k neighbours of every image of a model.

Light module: heavy imports happen inside :func:`run`.
"""

from __future__ import annotations

import argparse

from vo_similarity.cli_common import (
    EXIT_OK,
    add_device,
    add_model,
    add_threads,
    add_workdir,
    passive_openmp_wait,
    positive_int,
    reports_errors,
    set_threads,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``vo-similarity neighbours``."""
    add_workdir(parser, help="the work directory (the model's embeddings come from "
                             "`vo-similarity embed`)")
    add_model(parser)
    parser.add_argument("--k", type=positive_int, default=1000,
                        help="neighbours per image (default 1000; N-1 when fewer images)")
    parser.add_argument("--block-size", type=positive_int, default=1024,
                        help="query rows per block (default 1024)")
    parser.add_argument("--column-block-size", type=positive_int, default=65536,
                        help="database rows per block; a block holds block-size x this "
                             "float32 similarities (default 65536)")
    parser.add_argument("--backend", choices=("auto", "torch", "cuml", "sklearn"),
                        default="auto", help="k-NN implementation (default auto: torch, on "
                        "a GPU when one is usable)")
    add_device(parser)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="matrix-product precision; bf16/fp16 are re-ranked exactly in "
                             "float32, so the result is the same (default fp32)")
    parser.add_argument("--cluster", metavar="SCHEDULER", default=None,
                        help="run the query blocks on a Dask cluster, e.g. tcp://host:8786; "
                             "its workers need vo-similarity installed, the embeddings are "
                             "sent to them (same result; default: this machine)")
    parser.add_argument("--outlier-neighbours", type=positive_int, default=10, metavar="M",
                        help="outlier score = mean distance to the M nearest (default 10)")
    add_threads(parser)


@reports_errors("neighbours")
def run(args: argparse.Namespace) -> int:
    """Compute and write the neighbours and outlier scores of the model ``--model``."""
    import time

    from vo_similarity.neighbours.store import compute_model_neighbours
    from vo_similarity.workdir import WorkDir

    passive_openmp_wait()  # before torch loads
    set_threads(args.threads)
    # loading torch takes ~1 s: before the clock, which times the work itself
    import torch  # noqa: F401

    model = WorkDir(args.workdir).model(args.model)
    start = time.perf_counter()
    summary = compute_model_neighbours(
        model, args.k, outlier_neighbours=args.outlier_neighbours,
        progress=args.progress, backend=args.backend,
        device=None if args.device == "auto" else args.device,
        precision=args.precision, block_size=args.block_size,
        column_block_size=args.column_block_size, cluster=args.cluster)
    print(f"{summary.n_images} images, {summary.k} neighbours each, "
          f"{time.perf_counter() - start:.1f} s")
    for path in summary.files:
        print(f"  {path}")
    return EXIT_OK
