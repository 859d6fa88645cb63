"""``vo-similarity embed``: write [N, D] unit vectors and their image ids beside the model."""

from __future__ import annotations

import argparse

from vo_similarity.learn.cli_common import add_common, device_name, reports_errors, set_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--all-categories", action="store_true",
                        help="embed every image, not only the model's category")


@reports_errors("embed")
def run(args: argparse.Namespace) -> int:
    from vo_similarity.learn.embed import embed_workdir
    from vo_similarity.workdir import WorkDir

    set_threads(args.threads)
    work = WorkDir(args.workdir)
    vectors, _ = embed_workdir(work, args.model, device=device_name(args.device),
                                 batch_size=args.batch_size, all_categories=args.all_categories)
    print(f"{vectors.shape[0]} embeddings of dimension {vectors.shape[1]}: "
          f"{work.model(args.model).embeddings}")
    return 0
