"""Arguments shared by the learning stage's subcommands (imports nothing heavy)."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

__all__ = ["add_common", "reports_errors", "set_threads"]


def add_common(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    parser.add_argument("workdir", help="the work directory written by `vo-similarity ingest`")
    parser.add_argument("--model", default="default", metavar="NAME",
                        help="model name, a folder below WORKDIR/models (default: %(default)s)")
    if device:
        parser.add_argument("--device", default="auto",
                            help="auto (CUDA when present), cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice)")


def set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def device_name(arg: str) -> str:
    from vo_similarity.learn.train import resolve_device

    return str(resolve_device(arg))


def reports_errors(stage: str) -> Callable:
    """Turn a bad-input error (missing file, invalid value) into one line and exit status 2."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def checked(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except (FileNotFoundError, ValueError) as exc:
                print(f"vo-similarity {stage}: error: {exc}", file=sys.stderr)
                return 2

        return checked

    return wrap
