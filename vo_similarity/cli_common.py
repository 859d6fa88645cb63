"""The command-line convention every stage follows (docs/cli.md).

One place for the exit statuses, the options shared by the stages (output
flags, ``WORKDIR``, ``--model``, ``--device``, ``--threads``), the logging
set-up and the one-line error reports. Imports nothing heavy, so that
``vo-similarity --help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TextIO

__all__ = [
    "DEFAULT_MODEL", "EPILOG", "EXIT_FAILURE", "EXIT_OK", "EXIT_REJECTED", "EXIT_STATUSES",
    "EXIT_USAGE", "UsageError", "add_common", "add_device", "add_model", "add_output_options",
    "add_threads", "add_workdir", "configure_logging", "device_name", "existing_file", "fail",
    "merge_output_options", "positive_int", "reports_errors", "require_ingested",
    "require_trained", "set_threads", "usage_error",
]

#: The stage did what was asked.
EXIT_OK = 0
#: The stage ran and could not do its work (a missing prerequisite, no image, a server error).
EXIT_FAILURE = 1
#: The command line is wrong; argparse uses the same status for what it detects.
EXIT_USAGE = 2
#: The stage finished, but some inputs were rejected (ingest; the report lists them).
EXIT_REJECTED = 3

#: status -> meaning, as in the table of docs/cli.md (a test compares the two)
EXIT_STATUSES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILURE: "failure",
    EXIT_USAGE: "usage error",
    EXIT_REJECTED: "finished but some inputs were rejected",
}

#: ``--model`` when it is not given, for every stage that works on one model
DEFAULT_MODEL = "default"

#: the package logger; the loggers of our modules are its children
OUR_LOGGER = "vo_similarity"

#: the end of every --help
EPILOG = ("exit status: " + ", ".join(f"{status} {meaning}"
                                      for status, meaning in EXIT_STATUSES.items())
          + "; see docs/cli.md")

#: option -> attribute of the value given after the stage name, and of the one given before
_OUTPUT_DESTS = {"verbose": "top_verbose", "quiet": "top_quiet", "no_progress": "top_no_progress"}


class UsageError(Exception):
    """The command line asks for something impossible (exit status :data:`EXIT_USAGE`)."""


def add_output_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``-v/--verbose``, ``-q/--quiet`` and ``--no-progress``.

    Args:
        parser: the top-level parser or a stage's.
        top: the top-level parser, whose values go to other attributes so that the
            flags may stand before the stage name, after it, or both
            (:func:`merge_output_options` adds them up).
    """
    where = "after" if top else "before"
    group = parser.add_argument_group(f"output (also accepted {where} the stage name)")
    dest = (lambda name: _OUTPUT_DESTS[name]) if top else (lambda name: name)
    group.add_argument("-v", "--verbose", action="count", default=0, dest=dest("verbose"),
                       help="-v: our INFO messages, -vv: our DEBUG messages too; other "
                            "libraries log warnings only")
    group.add_argument("-q", "--quiet", action="store_true", dest=dest("quiet"),
                       help="no progress bars, warnings and errors only")
    group.add_argument("--no-progress", action="store_true", dest=dest("no_progress"),
                       help="no progress bars (they are shown when standard error is a "
                            "terminal)")


def merge_output_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combine the output flags given before and after the stage name into
    ``args.verbose``, ``args.quiet`` and ``args.progress`` (whether to draw progress bars).

    Exits with :data:`EXIT_USAGE` (through ``parser.error``) when both ``-v`` and ``-q``
    are given.
    """
    for name, top in _OUTPUT_DESTS.items():
        setattr(args, name, getattr(args, name, 0) + getattr(args, top, 0))
        if hasattr(args, top):
            delattr(args, top)
    args.quiet, args.no_progress = bool(args.quiet), bool(args.no_progress)
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet exclude each other")
    args.progress = not (args.quiet or args.no_progress) and sys.stderr.isatty()


class _StderrHandler(logging.StreamHandler):
    """A handler on the ``sys.stderr`` of the moment (pytest replaces it for each test)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def configure_logging(verbose: int) -> None:
    """Console logging: our messages from INFO (``verbose`` 1) or DEBUG (2 and more),
    warnings only otherwise; other libraries' loggers warn only, at every level.

    The threshold sits on the console handler as well as on our logger, so that a
    module raising its own level for a log file of its own (training does) does
    not flood the terminal. Calling it again replaces the handler it installed.
    """
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s",
                                           datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger(OUR_LOGGER).setLevel(level)


def add_workdir(parser: argparse.ArgumentParser,
                help: str = "the work directory written by `vo-similarity ingest`") -> None:
    """The positional ``WORKDIR``."""
    parser.add_argument("workdir", metavar="WORKDIR", help=help)


def add_model(parser: argparse.ArgumentParser) -> None:
    """``-m/--model NAME``: the model folder ``WORKDIR/models/NAME``."""
    parser.add_argument("-m", "--model", default=DEFAULT_MODEL, metavar="NAME",
                        help="the model, a folder below WORKDIR/models (default: %(default)s)")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``: where torch computes."""
    parser.add_argument("--device", default="auto",
                        help="auto (a GPU when one is usable), cpu, cuda or cuda:N "
                             "(default: %(default)s)")


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads``: torch's CPU threads."""
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (default: torch's choice)")


def add_common(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """``WORKDIR``, ``--model``, ``--device`` (unless ``device`` is false) and ``--threads``."""
    add_workdir(parser)
    add_model(parser)
    if device:
        add_device(parser)
    add_threads(parser)


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1 (else a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def existing_file(text: str) -> str:
    """An argparse ``type``: a path that must name a file (else a usage error)."""
    from pathlib import Path

    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return text


def require_ingested(workdir: str) -> None:
    """Check, before any heavy import, that ``workdir`` holds an ingested manifest.

    Raises:
        FileNotFoundError: it does not (:func:`reports_errors` makes it :data:`EXIT_FAILURE`).
    """
    from vo_similarity.workdir import WorkDir

    manifest = WorkDir(workdir).manifest
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} is missing: run `vo-similarity ingest {workdir}` "
                                "first")


def require_trained(workdir: str, model: str) -> None:
    """Check, before any heavy import, that the model ``model`` of ``workdir`` is trained.

    Raises:
        FileNotFoundError: it is not (:func:`reports_errors` makes it :data:`EXIT_FAILURE`).
    """
    from vo_similarity.workdir import WorkDir

    require_ingested(workdir)
    model_dir = WorkDir(workdir).model(model)
    for path in (model_dir.config, model_dir.weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `vo-similarity train {workdir} "
                                    f"--model {model}` first")


def passive_openmp_wait() -> None:
    """Have torch's OpenMP threads sleep, not spin, when a parallel region ends.

    The k-NN alternates torch's multi-threaded matrix product with the
    selection's own threads (:mod:`vo_similarity.neighbours.cpu_select`);
    by default OpenMP threads spin for a while after each region, on the
    cores the selection then needs (docs/neighbours.md, "Speed on the CPU").
    OpenMP reads ``OMP_WAIT_POLICY`` when torch loads, so this acts only
    before the process's first ``import torch``; a value the user set stays.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_threads(n: int | None) -> None:
    """Give torch ``n`` CPU threads (``None``: leave torch's choice)."""
    if n:
        import torch

        torch.set_num_threads(n)


def device_name(arg: str) -> str:
    """The torch device ``--device`` names (``auto`` resolved)."""
    from vo_similarity.learn.train import resolve_device

    return str(resolve_device(arg))


def usage_error(stage: str, message: str) -> int:
    """Print ``message`` as argparse does and return :data:`EXIT_USAGE`."""
    print(f"vo-similarity {stage}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def fail(stage: str, message: str) -> int:
    """Print ``message`` on standard error and return :data:`EXIT_FAILURE`."""
    print(f"vo-similarity {stage}: error: {message}", file=sys.stderr)
    return EXIT_FAILURE


#: what a stage raises when it cannot do its work: one line and EXIT_FAILURE, no traceback
EXPECTED_FAILURES: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError)


def reports_errors(stage: str) -> Callable:
    """Decorate a stage's ``run``: :class:`UsageError` becomes one line and
    :data:`EXIT_USAGE`; a missing file, a bad value or a runtime error one line and
    :data:`EXIT_FAILURE`, with its traceback logged at DEBUG (shown by ``-vv``).
    Anything else keeps its traceback (a bug to report)."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def checked(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except UsageError as exc:
                return usage_error(stage, str(exc))
            except EXPECTED_FAILURES as exc:
                logging.getLogger(__name__).debug("%s failed", stage, exc_info=True)
                return fail(stage, str(exc))

        return checked

    return wrap
