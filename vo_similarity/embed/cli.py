"""``vo-similarity embed``: write [N, D] unit vectors and their image ids beside the model."""

from __future__ import annotations

import argparse

from vo_similarity.cli_common import (
    EXIT_OK,
    add_common,
    device_name,
    positive_int,
    reports_errors,
    require_trained,
    set_threads,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``vo-similarity embed``."""
    add_common(parser)
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="images per forward pass (default: %(default)s)")
    parser.add_argument("--all-categories", action="store_true",
                        help="embed every image, not only the model's category")
    parser.add_argument("--cluster", metavar="SCHEDULER", default=None,
                        help="run the batches on a Dask cluster, e.g. tcp://host:8786; its "
                             "workers need vo-similarity installed, the weights and each "
                             "batch's pixels are sent to them (same vectors; default: this "
                             "machine)")


@reports_errors("embed")
def run(args: argparse.Namespace) -> int:
    """Embed the images of WORKDIR with the model ``--model``."""
    require_trained(args.workdir, args.model)

    from vo_similarity.embed.embed import embed_workdir
    from vo_similarity.workdir import WorkDir

    set_threads(args.threads)
    work = WorkDir(args.workdir)
    vectors, _ = embed_workdir(work, args.model, device=device_name(args.device),
                               batch_size=args.batch_size, all_categories=args.all_categories,
                               progress=args.progress, cluster=args.cluster)
    print(f"{vectors.shape[0]} embeddings of dimension {vectors.shape[1]}: "
          f"{work.model(args.model).embeddings}")
    return EXIT_OK
