"""``vo-similarity evaluate``: precision@k, mAP and invariance beside two baselines."""

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
    """Declare the options of ``vo-similarity evaluate``."""
    add_common(parser)
    parser.add_argument("--split", choices=["all", "train", "val"],
                        help="images to evaluate (default: val if the model holds images out)")
    parser.add_argument("--max-images", type=positive_int, default=5000,
                        help="evaluate a random subset of at most this many images "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1234,
                        help="seed of the invariance transforms (default: %(default)s)")
    parser.add_argument("--no-grid", action="store_true", help="skip the neighbour grid PNG")


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


@reports_errors("evaluate")
def run(args: argparse.Namespace) -> int:
    """Evaluate the model ``--model`` and print its metrics beside the baselines."""
    require_trained(args.workdir, args.model)

    from vo_similarity.evaluate.evaluate import InvarianceTransform, evaluate_model
    from vo_similarity.workdir import WorkDir

    set_threads(args.threads)
    work = WorkDir(args.workdir)
    report = evaluate_model(work, args.model, split=args.split, device=device_name(args.device),
                            transform=InvarianceTransform(seed=args.seed),
                            max_images=args.max_images, grid=not args.no_grid,
                            progress=args.progress)
    print(f"model {args.model!r}, split {report['split']}, {report['n_images']} images")
    print(f"{'embedding':24s} {'invariance':>10s} {'mean rank':>9s} {'P@10':>6s} {'mAP':>6s}")
    for name, m in report["metrics"].items():
        inv = m["invariance"]
        print(f"{name:24s} {_fmt(inv['top1']):>10s} {inv['mean_rank']:9.1f} "
              f"{_fmt(m.get('precision@10')):>6s} {_fmt(m.get('mAP')):>6s}")
    model_dir = work.model(args.model)
    print(f"metrics: {model_dir.evaluation}")
    if not args.no_grid:
        print(f"grid: {model_dir.evaluation_grid}")
    return EXIT_OK
