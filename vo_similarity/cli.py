"""The ``vo-similarity`` command: one subcommand per pipeline stage.

Each stage lives in its own subpackage and exposes, in a light module that
imports nothing heavy at import time, two functions::

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int      # the exit status

This module only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand -> (module, one-line help)
STAGES: dict[str, tuple[str, str]] = {
    "ingest": ("vo_similarity.ingest.cli", "read images into the work directory"),
    "train": ("vo_similarity.learn.train_cli", "train the self-supervised model (SimCLR)"),
    "embed": ("vo_similarity.learn.embed_cli", "embed every image as a unit vector"),
    "evaluate": ("vo_similarity.learn.evaluate_cli", "precision, mAP and invariance vs baselines"),
    "tune": ("vo_similarity.learn.tune_cli", "hyperparameter search with Optuna"),
    "neighbours": ("vo_similarity.neighbours.cli", "exact top-k neighbours of every image"),
    "publish": ("vo_similarity.publish.cli", "load images and neighbours into GAVO DaCHS"),
    "demo": ("vo_similarity.demo", "run the whole pipeline on the built-in sample"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vo-similarity",
        description="Show me images like this one: affine-invariant similarity for VO archives.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, (module, help_) in STAGES.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose + 1, 2),
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.stage:
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
