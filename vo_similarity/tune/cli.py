"""``vo-similarity tune``: Optuna search; the study resumes from WORK/tune/study.sqlite."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vo_similarity.cli_common import (
    EXIT_OK,
    UsageError,
    add_common,
    device_name,
    existing_file,
    positive_int,
    reports_errors,
    require_ingested,
    set_threads,
)

if TYPE_CHECKING:
    from vo_similarity.learn.config import TrainConfig

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``vo-similarity tune``."""
    add_common(parser)
    parser.add_argument("--config", metavar="FILE", type=existing_file,
                        help="base config (fixed settings)")
    parser.add_argument("--category", help="tune on this manifest category only")
    parser.add_argument("--trials", type=positive_int, default=20,
                        help="total finished trials wanted, earlier runs included (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, help="epochs per trial (default: the base config's)")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="held-out fraction (default: the base config's, else 0.2)")
    parser.add_argument("--min-invariance", type=float, default=0.9,
                        help="held-out invariance a trial must reach (default: %(default)s)")
    parser.add_argument("--study", default="simclr", help="study name (default: %(default)s)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")


@reports_errors("tune")
def run(args: argparse.Namespace) -> int:
    """Run (or continue) the study and print one line per trial."""
    try:
        config = _base_config(args)
    except ValueError as exc:  # a flag's value the config refuses
        raise UsageError(str(exc)) from exc
    require_ingested(args.workdir)

    import logging

    import optuna

    from vo_similarity.tune.tune import summary, tune
    from vo_similarity.workdir import WorkDir

    # optuna logs every trial at INFO through a handler of its own, past the
    # root logger's threshold that keeps other libraries at warnings
    optuna.logging.set_verbosity(logging.WARNING)
    set_threads(args.threads)
    work = WorkDir(args.workdir)
    study = tune(work, config, n_trials=args.trials, study_name=args.study,
                 min_invariance=args.min_invariance, device=device_name(args.device),
                 timeout=args.timeout, progress=args.progress)
    for row in summary(study):
        value = "-" if row["precision@10"] is None else f"{row['precision@10']:.3f}"
        print(f"trial {row['trial']:3d} {row['state']:9s} P@10 {value:>6s} "
              f"invariance {row['invariance']:.3f}")
    if work.tune_best_config.is_file():
        print(f"best config: {work.tune_best_config}  (train it: vo-similarity train "
              f"{args.workdir} --model {args.model} --config {work.tune_best_config})")
    return EXIT_OK


def _base_config(args: argparse.Namespace) -> TrainConfig:
    """The --config file (else the defaults) with the flags applied; the name is --model."""
    from vo_similarity.learn.config import TrainConfig

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
    return base.replace(**changes)
