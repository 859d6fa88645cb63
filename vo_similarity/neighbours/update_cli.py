"""``vo-similarity update``: embed the images ingest added, drop those it lost,
and update the model's neighbour lists without recomputing them all.

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
    """Declare the options of ``vo-similarity update``."""
    add_workdir(parser, help="the work directory, after `vo-similarity ingest` added images")
    add_model(parser)
    parser.add_argument("--k", type=positive_int, default=None,
                        help="neighbours per image (default: the model's stored k; 1000 "
                             "where its lists held every other image)")
    parser.add_argument("--block-size", type=positive_int, default=1024,
                        help="rows per block (default 1024)")
    parser.add_argument("--outlier-neighbours", type=positive_int, default=10, metavar="M",
                        help="outlier score = mean distance to the M nearest (default 10)")
    add_device(parser)
    add_threads(parser)


@reports_errors("update")
def run(args: argparse.Namespace) -> int:
    """Update the embeddings and neighbours of the model ``--model``."""
    import time

    from vo_similarity.neighbours.store import update_model_neighbours
    from vo_similarity.workdir import WorkDir

    passive_openmp_wait()  # before torch loads
    set_threads(args.threads)
    # loading torch takes ~1 s: before the clock, which times the work itself
    import torch  # noqa: F401

    work = WorkDir(args.workdir)
    start = time.perf_counter()
    result = update_model_neighbours(
        work, work.model(args.model), args.k, outlier_neighbours=args.outlier_neighbours,
        device="cpu" if args.device == "auto" else args.device, progress=args.progress,
        block_size=args.block_size)
    n, seconds = len(result.neighbour_ids), time.perf_counter() - start
    if result.rebuilt:
        print(f"{n} images, all embedded again and their {result.neighbour_ids.shape[1]} "
              "neighbours computed in full: the stored embeddings were not of these images "
              f"(see the warning above); {seconds:.1f} s")
    else:
        print(f"{n} images ({result.added} new, {result.removed} removed), "
              f"{result.neighbour_ids.shape[1]} neighbours each; {int(result.changed.sum())} "
              f"lists changed, {result.recomputed} computed in full; {seconds:.1f} s")
    if result.added or result.removed or result.rebuilt:
        print(f"serve them: vo-similarity publish {args.workdir}")
    return EXIT_OK
