"""``vo-similarity demo``: the whole pipeline on the built-in real sample.

Runs the stages one after the other through the same command-line entry points
a user would call (so the demo exercises exactly what is documented), skips
nothing silently, and ends with what the user can open or query. Every stage
resumes or is idempotent, so rerunning the demo is cheap.
"""

from __future__ import annotations

import argparse
import sys
import time

from vo_similarity.cli_common import EXIT_OK, EXIT_REJECTED, add_model, positive_int

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``vo-similarity demo``."""
    parser.add_argument("workdir", metavar="WORKDIR", nargs="?", default="work/builtin",
                        help="the work directory (default: %(default)s)")
    add_model(parser)
    parser.add_argument("--train", action="store_true",
                        help="train the model from scratch (about 6 minutes on 2 cores) "
                             "instead of installing the checkpoint shipped with the package, "
                             "which the same recipe produced")
    parser.add_argument("--k", type=positive_int, default=1000,
                        help="neighbours per image (default 1000)")
    parser.add_argument("--no-publish", action="store_true",
                        help="stop before loading into DaCHS (no server needed)")


def _output_flags(args: argparse.Namespace) -> list[str]:
    """The demo's own output flags, handed on to every stage it runs."""
    flags = ["-v"] * args.verbose
    if args.quiet:
        flags.append("--quiet")
    if args.no_progress:
        flags.append("--no-progress")
    return flags


def _steps(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    work, model = args.workdir, ["--model", args.model]
    steps = [
        ("ingest", ["ingest", work, "--builtin"]),
        ("train", ["train", work, *model, *([] if args.train else ["--shipped"])]),
        ("embed", ["embed", work, *model]),
        ("evaluate", ["evaluate", work, *model]),
        ("neighbours", ["neighbours", work, *model, "--k", str(args.k)]),
    ]
    if not args.no_publish:
        steps.append(("publish", ["publish", work, *model]))
    flags = _output_flags(args)
    return [(name, [*flags, *argv]) for name, argv in steps]


def run(args: argparse.Namespace) -> int:
    """Run the stages one after the other; stop at the first that fails.

    Returns:
        The first failing stage's exit status, else :data:`EXIT_REJECTED` when
        ingest rejected some inputs, else :data:`EXIT_OK`.
    """
    from vo_similarity.cli import main as cli_main
    from vo_similarity.workdir import WorkDir

    work = WorkDir(args.workdir)
    done: list[str] = []
    final = EXIT_OK
    for name, argv in _steps(args):
        print(f"\n=== vo-similarity {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        status = cli_main(argv)
        print(f"=== {name}: exit status {status} after {time.perf_counter() - start:.0f} s",
              flush=True)
        # an ingest that rejected some inputs still wrote its images: go on
        if status not in (EXIT_OK, EXIT_REJECTED):
            print(f"demo: '{name}' failed (exit status {status}); see the messages above.",
                  file=sys.stderr)
            return status
        final = max(final, status)
        done.append(name)

    print("\n=== what you can open or query")
    if work.contact_sheet.is_file():
        print(f"contact sheet of the ingested images: {work.contact_sheet}")
    model = work.model(args.model)
    if model.evaluation_grid.is_file():
        print(f"query images and their nearest neighbours: {model.evaluation_grid}")
    if model.evaluation.is_file():
        print(f"evaluation metrics: {model.evaluation}")
    if model.neighbour_ids.is_file():
        print(f"neighbour table: {model.neighbour_ids}")
    if "publish" in done:
        from vo_similarity.publish.dachs import DachsSite

        site = DachsSite.from_config()
        print(f"TAP service (TOPCAT, STILTS, pyvo): {site.tap_url}; "
              "the ADQL query printed by publish above runs there as printed")
        from urllib.parse import quote

        from vo_similarity.ingest.manifest import read_manifest

        first = read_manifest(work.manifest)["obs_id"][0]
        print("Python client (docs/client/README.md): .venv/bin/python -c \"from "
              "vo_similarity.client import SimilarityClass; "
              f"print(SimilarityClass(server='{site.url}').query_similar('{first}', n=10))\"")
        print(f"web page \"You might also like these images\" (docs/web.md): "
              f"{site.url}/similarity/q/web/custom/#id={quote(first, safe='')}&model=1")
    return final
