"""The checkpoint shipped with the package: export it, and install it as a model.

The shipped model is trained by the project's own recipe on the built-in real
sample (see docs/learning.md)::

    vo-similarity ingest WORK --builtin
    vo-similarity train WORK --model builtin
    python -m vo_similarity.learn.pretrained WORK --model builtin   # writes vo_similarity/data/

Its weights are stored as an fp16 state dict (half the size; embeddings differ
from the fp32 ones by ~1e-3) beside its ``config.json``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from vo_similarity.learn.config import TrainConfig
from vo_similarity.resources import shipped_model_files
from vo_similarity.workdir import ModelDir, WorkDir, atomic_write

__all__ = [
    "SHIPPED_CONFIG",
    "SHIPPED_WEIGHTS",
    "export_shipped",
    "install_shipped",
    "shipped_available",
]

SHIPPED_WEIGHTS, SHIPPED_CONFIG = shipped_model_files()
DATA = SHIPPED_WEIGHTS.parent


def shipped_available(source: Path = DATA) -> bool:
    return (source / SHIPPED_WEIGHTS.name).is_file() and (source / SHIPPED_CONFIG.name).is_file()


def export_shipped(model_dir: ModelDir, dest: Path = DATA) -> tuple[Path, Path]:
    """Write ``model_dir``'s final weights as fp16 and its config into ``dest``."""
    state = torch.load(model_dir.weights, map_location="cpu", weights_only=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    dest.mkdir(parents=True, exist_ok=True)
    weights, config = dest / SHIPPED_WEIGHTS.name, dest / SHIPPED_CONFIG.name
    with atomic_write(weights) as tmp:
        torch.save(half, tmp)
    TrainConfig.load(model_dir.config).save(config)
    return weights, config


def install_shipped(workdir: WorkDir, name: str = "builtin", source: Path = DATA) -> ModelDir:
    """Make the shipped checkpoint the model ``name`` of ``workdir`` (config + weights).

    Raises:
        FileNotFoundError: the package was built without the shipped checkpoint.
    """
    if not shipped_available(source):
        raise FileNotFoundError(f"no shipped checkpoint in {source}: train a model instead")
    model_dir = workdir.model(name).ensure()
    TrainConfig.load(source / SHIPPED_CONFIG.name).replace(name=name).save(model_dir.config)
    with atomic_write(model_dir.weights) as tmp:
        shutil.copyfile(source / SHIPPED_WEIGHTS.name, tmp)
    return model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="export a trained model as the shipped checkpoint")
    parser.add_argument("workdir")
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--dest", type=Path, default=DATA)
    args = parser.parse_args(argv)
    weights, config = export_shipped(WorkDir(args.workdir).model(args.model), args.dest)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {config}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
