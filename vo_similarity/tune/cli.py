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
    require_trained,
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
    parser.add_argument("--study", default=None,
                        help="study name (default: simclr, or the name of the objective "
                             "for --objective selections or category)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--objective", choices=["precision", "category", "selections"],
                        default="precision",
                        help="precision: held-out macro precision@10 against the labels; "
                             "category: macro precision@10 against the manifest's category "
                             "on its tuning half (all images train; e.g. the built-in "
                             "sample); "
                             "selections: pairwise accuracy on held-out recorded selections "
                             "(needs --selections; the selection weight is searched) "
                             "(default: %(default)s)")
    parser.add_argument("--selections", metavar="SOURCE",
                        help="recorded selections: 'service', a TAP URL or an exported file")
    parser.add_argument("--held-out", type=float, default=0.3,
                        help="share of the selections' queries held out for the objective "
                             "(default: %(default)s)")
    parser.add_argument("--init-from", metavar="MODEL",
                        help="every trial starts from this trained model's weights and config "
                             "(unless --config is given)")


@reports_errors("tune")
def run(args: argparse.Namespace) -> int:
    """Run (or continue) the study and print one line per trial."""
    if args.objective == "selections" and not args.selections:
        raise UsageError("--objective selections needs --selections SOURCE")
    if args.selections and args.objective != "selections":
        raise UsageError("--selections is used by --objective selections only")
    if not 0 < args.held_out < 1:
        raise UsageError(f"--held-out must be in (0, 1), not {args.held_out}")
    if args.init_from is not None:
        require_trained(args.workdir, args.init_from)
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
    selections = None
    if args.selections:
        from vo_similarity.publish.collections import collection_of
        from vo_similarity.selections import read_selections

        selections = read_selections(args.selections, collection=collection_of(work))
    study_name = args.study or {"selections": "selections", "category": "category"}.get(
        args.objective, "simclr")
    study = tune(work, config, n_trials=args.trials, study_name=study_name,
                 min_invariance=args.min_invariance, device=device_name(args.device),
                 timeout=args.timeout, progress=args.progress, objective=args.objective,
                 selections=selections, held_out=args.held_out,
                 init_weights=work.model(args.init_from).weights if args.init_from else None)
    label = {"precision": "P@10", "category": "category P@10 (tuning half)"}.get(
        args.objective, "selection accuracy")
    for row in summary(study):
        value = "-" if row["value"] is None else f"{row['value']:.3f}"
        print(f"trial {row['trial']:3d} {row['state']:9s} {label} {value:>6s} "
              f"invariance {row['invariance']:.3f}")
    if work.tune_best_config.is_file():
        then = f" --selections {args.selections}" if args.selections else ""
        if args.init_from:
            then += f" --init-from {args.init_from}"
        print(f"best config: {work.tune_best_config}  (train it: vo-similarity train "
              f"{args.workdir} --model {args.model} --config {work.tune_best_config}{then})")
    return EXIT_OK


def _base_config(args: argparse.Namespace) -> TrainConfig:
    """The --config file (else the defaults) with the flags applied; the name is --model."""
    from vo_similarity.learn.cli import starting_config

    base = starting_config(args)
    changes = {"name": args.model}
    if args.category is not None:
        changes["category"] = args.category
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.val_fraction is not None:
        changes["val_fraction"] = args.val_fraction
    elif base.val_fraction <= 0 and getattr(args, "objective", "precision") == "precision":
        # the selections objective holds out queries, the category one a fixed half
        changes["val_fraction"] = 0.2
    return base.replace(**changes)
