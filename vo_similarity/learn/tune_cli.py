"""``vo-similarity tune``: Optuna search; the study resumes from WORK/tune/study.sqlite."""

from __future__ import annotations

import argparse

from vo_similarity.learn.cli_common import add_common, device_name, reports_errors, set_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--config", metavar="FILE", help="base config (fixed settings)")
    parser.add_argument("--category", help="tune on this manifest category only")
    parser.add_argument("--trials", type=int, default=20,
                        help="total finished trials wanted, earlier runs included (default: %(default)s)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the base config's)")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="held-out fraction (default: the base config's, else 0.2)")
    parser.add_argument("--min-invariance", type=float, default=0.9,
                        help="held-out invariance a trial must reach (default: %(default)s)")
    parser.add_argument("--study", default="simclr", help="study name (default: %(default)s)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@reports_errors("tune")
def run(args: argparse.Namespace) -> int:
    from vo_similarity.learn.config import TrainConfig
    from vo_similarity.learn.tune import summary, tune
    from vo_similarity.workdir import WorkDir

    set_threads(args.threads)
    base = TrainConfig.load(args.config) if args.config else TrainConfig()
    changes = {"name": args.model}
    if args.category is not None:
        changes["category"] = args.category
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.val_fraction is not None:
        changes["val_fraction"] = args.val_fraction
    elif base.val_fraction <= 0:
        changes["val_fraction"] = 0.2
    work = WorkDir(args.workdir)
    study = tune(work, base.replace(**changes), n_trials=args.trials, study_name=args.study,
                 min_invariance=args.min_invariance, device=device_name(args.device),
                 timeout=args.timeout, progress=not args.no_progress)
    for row in summary(study):
        value = "-" if row["precision@10"] is None else f"{row['precision@10']:.3f}"
        print(f"trial {row['trial']:3d} {row['state']:9s} P@10 {value:>6s} "
              f"invariance {row['invariance']:.3f}")
    if work.tune_best_config.is_file():
        print(f"best config: {work.tune_best_config}  (train it: vo-similarity train "
              f"{args.workdir} --model {args.model} --config {work.tune_best_config})")
    return 0
