"""SimCLR training with per-epoch checkpoints, exact resume and optional DDP.

Repeatability: the weights are seeded from ``cfg.seed``; the batch order and the
augmentation generator of every epoch are seeded from ``(seed, epoch, rank)``,
like ``DistributedSampler.set_epoch``. A checkpoint holds the model, optimizer,
scheduler, loss history and RNG states after a whole epoch, so a run killed at
any point and resumed ends with the same weights as an uninterrupted one.

Several GPUs: start with ``torchrun --nproc_per_node=G -m vo_similarity.cli train ...``;
when ``WORLD_SIZE`` is set the process group is initialised here, each rank
takes its own shard of every epoch's permutation, and the loss gathers
negatives from all ranks.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vo_similarity.learn.augment import augment_batch
from vo_similarity.learn.canonical import canonical_matrices
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.data import load_images
from vo_similarity.learn.model import autocast_dtype, build_loss, build_model
from vo_similarity.workdir import ModelDir, WorkDir, atomic_write

__all__ = ["TrainResult", "epoch_permutation", "plot_loss", "resolve_device", "train"]

log = logging.getLogger(__name__)

#: called after each epoch with (epoch index, model, mean loss); may raise to stop
EpochCallback = Callable[[int, nn.Module, float], None]


@dataclass
class TrainResult:
    model: nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    resumed_from_epoch: int = 0


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present (this rank's GPU under torchrun), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but no CUDA device is available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def _setup_distributed(device: torch.device) -> tuple[int, int, bool]:
    """Join the process group when launched by torchrun.

    Returns:
        (rank, world size, whether this call created the group).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), created


def epoch_permutation(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's share of the shuffled indices of one epoch (equal length on all ranks)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    per_rank = n // world
    return perm[rank * per_rank:(rank + 1) * per_rank]


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = max(1, cfg.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


def plot_loss(losses: list[float], path: Path, title: str) -> None:
    """Write the loss curve as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(range(1, len(losses) + 1), losses, marker="." if len(losses) < 50 else None)
    ax.set(xlabel="epoch", ylabel="NT-Xent loss", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp)
        plt.close(fig)


def _save(obj: dict, path: Path) -> None:
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("config")
    if saved is None or TrainConfig.from_dict(saved).to_dict() != cfg.to_dict():
        raise ValueError(
            f"{path} was written with another configuration; "
            "train with --restart to discard it, or pass the same config to resume"
        )
    return state


def _canonical_frames(pixels, cfg: TrainConfig, chunk: int = 512) -> torch.Tensor:
    """The canonical-frame matrices ``[N, 2, 3]`` of all training images, computed once.

    They depend only on the stored pixels, so every epoch reuses them.
    """
    frames = [canonical_matrices(pixels[start:start + chunk], cfg.canonical)
              for start in range(0, len(pixels), chunk)]
    frames = torch.cat(frames)
    zoom = 1 / frames[:, 0, 0]
    log.info("canonical frames: zoom median %.2f (10%%-90%% %.2f-%.2f)", float(zoom.median()),
             float(zoom.quantile(0.1)), float(zoom.quantile(0.9)))
    return frames


def train(
    workdir: WorkDir,
    cfg: TrainConfig,
    model_dir: ModelDir | None = None,
    *,
    device: str = "auto",
    progress: bool = True,
    restart: bool = False,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train SimCLR on the training split of ``workdir`` (optionally one category).

    Args:
        workdir: the work directory (manifest + pixels).
        cfg: hyperparameters; saved to ``model_dir.config``.
        model_dir: where checkpoint, weights, loss curve and log go; None keeps
            everything in memory (used by the tuner).
        device: ``auto``, ``cpu``, ``cuda`` or any torch device string.
        progress: show a tqdm bar with loss and images/s.
        restart: ignore an existing checkpoint instead of resuming from it.
        on_epoch: called after every epoch (e.g. to prune an Optuna trial).

    Returns:
        The trained model (on ``device``, eval mode) and the loss per epoch.
    """
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    rank, world, own_group = _setup_distributed(dev)
    is_main = rank == 0
    data = load_images(workdir, category=cfg.category, split="train", val_fraction=cfg.val_fraction)
    n = len(data)
    per_rank_batch = max(2, cfg.batch_size // world)
    per_rank_n = n // world
    batch = min(per_rank_batch, per_rank_n)
    if batch < 2:
        raise ValueError(f"only {n} training images for {world} process(es): need at least 2 each")
    steps = per_rank_n // batch

    file_handler = None
    if model_dir is not None and is_main:
        model_dir.ensure()
        cfg.save(model_dir.config)
        file_handler = logging.FileHandler(model_dir.log)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file_handler)
        if log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(dev)
    if world > 1 and dev.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    loss_fn = build_loss(cfg, distributed=world > 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps))
    losses: list[float] = []
    start = 0
    ckpt = None
    if model_dir is not None and not restart:
        ckpt = _load_checkpoint(model_dir.checkpoint, cfg)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        losses, start = list(ckpt["losses"]), int(ckpt["epoch"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        np.random.set_state(ckpt["rng"]["numpy"])
        random.setstate(ckpt["rng"]["python"])
        log.info("resuming %s after epoch %d of %d", model_dir.root, start, cfg.epochs)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    frames = _canonical_frames(data.pixels, cfg) if cfg.canonical.enabled else None
    amp = autocast_dtype(cfg.precision, dev)
    log.info("training %s: %d images, %d steps/epoch of %d x %d, device %s, autocast %s",
             cfg.name, n, steps, batch, world, dev, amp)
    bar = tqdm(total=(cfg.epochs - start) * steps, disable=not (progress and is_main),
               unit="step", desc=f"train {cfg.name}", dynamic_ncols=True)
    t0, seen = time.perf_counter(), 0
    model.train()
    for epoch in range(start, cfg.epochs):
        order = epoch_permutation(n, cfg.seed, epoch, rank, world)
        gen = torch.Generator(dev).manual_seed((cfg.seed * 7919 + epoch) * 1009 + rank)
        total = 0.0
        for step in range(steps):
            idx = order[step * batch:(step + 1) * batch]
            x = data.pixels[idx].to(dev, non_blocking=True)
            base = frames[idx].to(dev) if frames is not None else None
            v1 = augment_batch(x, cfg.augment, gen, cfg.image_size, base)
            v2 = augment_batch(x, cfg.augment, gen, cfg.image_size, base)
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                z = model(torch.cat([v1, v2]))
            z1, z2 = z.float().chunk(2)
            loss = loss_fn(z1, z2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
            seen += len(idx) * world
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}",
                            img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        losses.append(total / steps)
        log.info("epoch %d/%d loss %.4f", epoch + 1, cfg.epochs, losses[-1])
        if model_dir is not None and is_main:
            _save({
                "config": cfg.to_dict(), "epoch": epoch + 1, "losses": losses,
                "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                        "python": random.getstate()},
            }, model_dir.checkpoint)
            plot_loss(losses, model_dir.loss_plot, f"{cfg.name} ({cfg.backbone}, {cfg.stem} stem)")
        if on_epoch is not None:
            on_epoch(epoch, _unwrap(model), losses[-1])
    bar.close()
    seconds = time.perf_counter() - t0
    final = _unwrap(model).eval()
    if model_dir is not None and is_main:
        _save(final.state_dict(), model_dir.weights)
        log.info("wrote %s", model_dir.weights)
    if file_handler is not None:
        log.removeHandler(file_handler)
        file_handler.close()
    if own_group:
        torch.distributed.destroy_process_group()
    return TrainResult(final, losses, seconds, seen / seconds if seconds else 0.0, start)
