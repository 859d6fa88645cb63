"""Arguments shared by the learning stage's subcommands (imports nothing heavy)."""

from __future__ import annotations

import argparse

__all__ = ["add_common", "set_threads"]


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
