"""The ``vo-similarity`` command: one subcommand per pipeline stage (docs/cli.md).

Each stage lives in its own subpackage and exposes, in a light ``cli`` module
that imports nothing heavy at import time, two functions::

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int      # an exit status of vo_similarity.cli_common

This module wires them together and applies the convention every stage shares
(:mod:`vo_similarity.cli_common`): the output flags ``-v``/``-q``/``--no-progress``
(before or after the stage name) are added here, merged into ``args.verbose``,
``args.quiet`` and ``args.progress``, and set up logging before ``run`` is called.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vo_similarity.cli_common import (
    EPILOG,
    EXIT_USAGE,
    add_output_options,
    configure_logging,
    fail,
    merge_output_options,
)

#: subcommand -> (module, one-line help), in pipeline order
STAGES: dict[str, tuple[str, str]] = {
    "ingest": ("vo_similarity.ingest.cli", "read images into the work directory"),
    "train": ("vo_similarity.learn.cli", "train the self-supervised model (SimCLR)"),
    "embed": ("vo_similarity.embed.cli", "embed every image as a unit vector"),
    "evaluate": ("vo_similarity.evaluate.cli", "precision, mAP and invariance vs baselines"),
    "tune": ("vo_similarity.tune.cli", "hyperparameter search with Optuna"),
    "neighbours": ("vo_similarity.neighbours.cli", "exact top-k neighbours of every image"),
    "update": ("vo_similarity.neighbours.update_cli",
               "embed added images and update the neighbours without recomputing them all"),
    "publish": ("vo_similarity.publish.cli", "load images and neighbours into GAVO DaCHS"),
    "improve": ("vo_similarity.improve.cli", "fine-tune on recorded selections, republish if better"),
    "demo": ("vo_similarity.demo", "run the whole pipeline on the built-in sample"),
}

#: what the extra ``pipeline`` installs (pyproject.toml), as imported: the stages need
#: it, the client (``pip install vo-similarity``) does not
PIPELINE_MODULES = frozenset({"torch", "torchvision", "lightly", "optuna", "sklearn", "psycopg",
                              "scipy", "matplotlib", "tqdm", "onnx"})


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per stage."""
    parser = argparse.ArgumentParser(
        prog="vo-similarity", epilog=EPILOG,
        description="Show me images like this one: affine-invariant similarity for VO archives.",
    )
    add_output_options(parser, top=True)
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, (module, help_) in STAGES.items():
        p = sub.add_parser(name, help=help_, description=help_, epilog=EPILOG)
        importlib.import_module(module).add_arguments(p)
        add_output_options(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one stage; returns its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.stage:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    merge_output_options(parser, args)
    configure_logging(args.verbose)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in PIPELINE_MODULES:
            raise
        # a client-only install: the stages are the archive's, in the extra
        return fail(args.stage, f"needs the archive pipeline ({exc.name} is not installed): "
                                "pip install 'vo-similarity[pipeline]'")


if __name__ == "__main__":
    sys.exit(main())
