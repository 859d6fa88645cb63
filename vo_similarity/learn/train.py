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

Selections (``selections=``): recorded marks "this image is / is not similar to
that query" add a supervised contrastive term (:mod:`vo_similarity.learn.selection_loss`)
weighted by ``cfg.selection_weight``. Repeated marks of one (query, image) pair
are merged by majority (a tie drops the pair); each step draws
``cfg.selection_batch`` pairs, whole queries at a time, from a generator seeded
like the batch order, so resuming stays exact. ``init_weights`` starts from a
trained model's weights (fine-tuning).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from vo_similarity.learn.augment import augment_batch
from vo_similarity.learn.canonical import canonical_matrices
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.data import load_images
from vo_similarity.learn.model import autocast_dtype, build_loss, build_model
from vo_similarity.learn.selection_loss import SelectionContrastiveLoss, pair_batch
from vo_similarity.workdir import ModelDir, WorkDir, atomic_write, file_sha256

if TYPE_CHECKING:
    from vo_similarity.selections import Selections

__all__ = ["FINE_TUNE_FILE", "SelectionPairs", "TrainResult", "epoch_permutation",
           "load_init_weights", "plot_loss", "resolve_device", "selection_pairs", "train"]

#: written beside a model trained with selections or from other weights: what it was given
FINE_TUNE_FILE = "fine_tune.json"

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
    #: mean selection term per epoch (empty when trained without selections)
    selection_losses: list[float] = field(default_factory=list)
    #: what the selections and initial weights were (also in ``fine_tune.json``)
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SelectionPairs:
    """Marked pairs of training images, one label per (query, image), grouped by query.

    Attributes:
        query, chosen: ``[P]`` int64 positions in the training :class:`ImageSet`.
        similar: ``[P]`` bool, the majority of the pair's marks.
        starts, counts: ``[Q]`` where each query's pairs begin in the arrays, and how many.
        info: counts (``marks``, ``dropped_marks``, ``pairs``, ``ties``, ``queries``,
            ``similar_pairs``), ``latest`` (ISO time of the newest of the marks given, or None) and
            ``fingerprint`` (SHA-256 of the pairs), for the log and the checkpoint.
    """

    query: torch.Tensor
    chosen: torch.Tensor
    similar: torch.Tensor
    starts: np.ndarray
    counts: np.ndarray
    info: dict[str, Any]

    def __len__(self) -> int:
        return len(self.query)

    def draw(self, batch: int, per_query: int, gen: torch.Generator) -> torch.Tensor:
        """Indices of up to ``batch`` pairs: queries in random order, up to ``per_query``
        random pairs of each, until the batch is full."""
        picked, total = [], 0
        for q in torch.randperm(len(self.starts), generator=gen).tolist():
            take = min(int(self.counts[q]), per_query, batch - total)
            picked.append(torch.randperm(int(self.counts[q]), generator=gen)[:take]
                          + int(self.starts[q]))
            total += take
            if total >= batch:
                break
        return torch.cat(picked)


def selection_pairs(sel: Selections, image_ids: np.ndarray) -> SelectionPairs:
    """The pairs of ``sel`` between images of ``image_ids`` (the training images).

    Marks whose query or chosen image is not among ``image_ids``, or whose chosen
    image is the query, are dropped (counted in ``info``). Marks of one (query, image) pair are
    merged by majority; a tie drops the pair.

    Raises:
        ValueError: no pair is left.
    """
    ids = np.asarray(image_ids, dtype=np.int64)
    q = np.asarray(sel.query_id, dtype=np.int64)
    c = np.asarray(sel.chosen_id, dtype=np.int64)
    s = np.asarray(sel.is_similar, dtype=bool)
    keep = np.isin(q, ids) & np.isin(c, ids) & (q != c)
    dropped = int(len(q) - keep.sum())
    if not keep.any():
        raise ValueError(f"none of the {len(q)} selections is between two of the {len(ids)} "
                         "training images (check the work directory, --category and "
                         "--val-fraction)")
    pairs, inverse = np.unique(np.stack([q[keep], c[keep]], 1), axis=0, return_inverse=True)
    votes = np.bincount(inverse.ravel(), weights=np.where(s[keep], 1.0, -1.0),
                        minlength=len(pairs))
    ties = votes == 0
    pairs, similar = pairs[~ties], votes[~ties] > 0
    if not len(pairs):
        raise ValueError("every marked pair has as many similar as not-similar marks")
    order = np.argsort(ids, kind="stable")
    pos = order[np.searchsorted(ids, pairs, sorter=order)]  # [P, 2] positions in image_ids
    queries, starts, counts = np.unique(pairs[:, 0], return_index=True, return_counts=True)
    digest = hashlib.sha256(pairs.astype("<i8").tobytes() + similar.astype(np.uint8).tobytes())
    latest = sel.latest()
    info = {"marks": int(keep.sum()), "dropped_marks": dropped, "pairs": len(pairs),
            "ties": int(ties.sum()), "queries": len(queries),
            "similar_pairs": int(similar.sum()),
            "latest": None if latest is None or np.isnat(latest) else str(latest),
            "fingerprint": digest.hexdigest()}
    return SelectionPairs(torch.from_numpy(pos[:, 0].astype(np.int64)),
                          torch.from_numpy(pos[:, 1].astype(np.int64)),
                          torch.from_numpy(similar), starts, counts, info)


def load_init_weights(model: nn.Module, path: Path) -> None:
    """Load a trained model's state dict (fp16 or fp32) into ``model`` for fine-tuning.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the weights belong to another architecture.
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"the weights {path} do not fit this config's network (train with the "
                         f"config of the model they come from): {str(exc)[:300]}") from exc


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


def _load_checkpoint(path: Path, cfg: TrainConfig, inputs: dict[str, Any]) -> dict | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("config")
    if saved is None or TrainConfig.from_dict(saved).to_dict() != cfg.to_dict():
        raise ValueError(
            f"{path} was written with another configuration; "
            "train with --restart to discard it, or pass the same config to resume"
        )
    if _fingerprints(state.get("inputs", {})) != _fingerprints(inputs):
        raise ValueError(
            f"{path} was written with other selections or initial weights; "
            "train with --restart to discard it, or pass the same ones to resume"
        )
    return state


def _fingerprints(inputs: dict[str, Any]) -> tuple:
    """What must be equal for a checkpoint to resume: the selections' pairs and the initial weights."""
    sel = inputs.get("selections") or {}
    init = inputs.get("init_weights") or {}
    return sel.get("fingerprint"), init.get("sha256")


@contextlib.contextmanager
def _backbone_output(model: nn.Module, wanted: bool = True):
    """Collect the backbone's output of the forward passes made inside (a list).

    The selection term acts on these features, from which the embedding is
    taken, rather than on the projection head's output. A forward hook keeps
    the forward pass going through the (DDP-wrapped) model.
    """
    captured: list[torch.Tensor] = []
    if not wanted:
        yield captured
        return
    handle = _unwrap(model).backbone.register_forward_hook(
        lambda module, args, output: captured.append(output))
    try:
        yield captured
    finally:
        handle.remove()


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
    selections: Selections | None = None,
    init_weights: str | os.PathLike[str] | None = None,
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
        selections: recorded marks; with ``cfg.selection_weight`` > 0 each step adds
            ``selection_weight`` times the selection term over ``cfg.selection_batch``
            of their pairs. Marks of images outside the training images are dropped.
        init_weights: a trained model's ``model.pt`` to start from (fine-tuning); the
            network of ``cfg`` must be the same.

    Returns:
        The trained model (on ``device``, eval mode) and the loss per epoch.

    Raises:
        ValueError: a checkpoint of another config, selections or initial weights
            (without ``restart``), weights of another network, or selections of which
            no pair is between training images.
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
    pairs = None
    if selections is not None and cfg.selection_weight <= 0:
        log.warning("selection_weight is 0: the %d selections are not used", len(selections))
    elif selections is not None:
        pairs = selection_pairs(selections, data.image_ids)
    inputs: dict[str, Any] = {}
    if pairs is not None:
        inputs["selections"] = pairs.info
    if init_weights is not None:
        inputs["init_weights"] = {"path": str(init_weights), "sha256": file_sha256(init_weights)}

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
    if pairs is not None:
        info = pairs.info
        if info["dropped_marks"]:
            log.info("selections: %d of %d marks dropped (an image not among the %d training "
                     "images, or marked against itself)", info["dropped_marks"],
                     info["dropped_marks"] + info["marks"], n)
        log.info("selections: %d marks -> %d pairs (%d similar) of %d queries, %d ties dropped; "
                 "weight %g", info["marks"], info["pairs"], info["similar_pairs"],
                 info["queries"], info["ties"], cfg.selection_weight)
    model = build_model(cfg)
    if init_weights is not None:
        load_init_weights(model, Path(init_weights))
        log.info("starting from the weights %s", init_weights)
    model = model.to(dev)
    if world > 1 and dev.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    loss_fn = build_loss(cfg, distributed=world > 1)
    selection_fn = SelectionContrastiveLoss(cfg.selection_temperature,
                                            cfg.selection_negative_weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps))
    losses: list[float] = []
    selection_losses: list[float] = []
    start = 0
    ckpt = None
    if model_dir is not None and not restart:
        ckpt = _load_checkpoint(model_dir.checkpoint, cfg, inputs)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        losses, start = list(ckpt["losses"]), int(ckpt["epoch"])
        selection_losses = list(ckpt.get("selection_losses", []))
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
    if model_dir is not None and is_main:
        if inputs:
            with atomic_write(model_dir.root / FINE_TUNE_FILE) as tmp:
                tmp.write_text(json.dumps(inputs, indent=2) + "\n")
        else:  # a model retrained without them
            (model_dir.root / FINE_TUNE_FILE).unlink(missing_ok=True)
    bar = tqdm(total=(cfg.epochs - start) * steps, disable=not (progress and is_main),
               unit="step", desc=f"train {cfg.name}", dynamic_ncols=True)
    t0, seen = time.perf_counter(), 0
    model.train()
    for epoch in range(start, cfg.epochs):
        order = epoch_permutation(n, cfg.seed, epoch, rank, world)
        gen = torch.Generator(dev).manual_seed((cfg.seed * 7919 + epoch) * 1009 + rank)
        # the marks' own generator, on the CPU, seeded like the batch order
        mark_gen = (torch.Generator().manual_seed(((cfg.seed * 7919 + epoch) * 1009 + rank) * 13 + 1)
                    if pairs is not None else None)
        total = total_sel = 0.0
        for step in range(steps):
            idx = order[step * batch:(step + 1) * batch]
            x = data.pixels[idx].to(dev, non_blocking=True)
            base = frames[idx].to(dev) if frames is not None else None
            views = [augment_batch(x, cfg.augment, gen, cfg.image_size, base),
                     augment_batch(x, cfg.augment, gen, cfg.image_size, base)]
            marked = None
            if pairs is not None:
                drawn = pairs.draw(cfg.selection_batch, cfg.selection_per_query, mark_gen)
                marked = pair_batch(pairs.query[drawn], pairs.chosen[drawn], pairs.similar[drawn])
                xs = data.pixels[marked.rows].to(dev, non_blocking=True)
                bs = frames[marked.rows].to(dev) if frames is not None else None
                views += [augment_batch(xs, cfg.augment, gen, cfg.image_size, bs),
                          augment_batch(xs, cfg.augment, gen, cfg.image_size, bs)]
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None), \
                    _backbone_output(model, marked is not None) as features:
                z = model(torch.cat(views))
            z = z.float()
            z1, z2 = z[:len(idx)], z[len(idx):2 * len(idx)]
            loss = loss_fn(z1, z2)
            if marked is not None:
                # on the backbone's features, the space the embedding is taken from
                s1, s2 = features[0][2 * len(idx):].float().chunk(2)
                sel_loss = selection_fn(s1, s2, marked)
                loss = loss + cfg.selection_weight * sel_loss
                total_sel += sel_loss.item()
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
        if pairs is not None:
            selection_losses.append(total_sel / steps)
            log.info("epoch %d/%d loss %.4f (selection term %.4f x %g)", epoch + 1, cfg.epochs,
                     losses[-1], selection_losses[-1], cfg.selection_weight)
        else:
            log.info("epoch %d/%d loss %.4f", epoch + 1, cfg.epochs, losses[-1])
        if model_dir is not None and is_main:
            _save({
                "config": cfg.to_dict(), "epoch": epoch + 1, "losses": losses,
                "selection_losses": selection_losses, "inputs": inputs,
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
    return TrainResult(final, losses, seconds, seen / seconds if seconds else 0.0, start,
                       selection_losses, inputs)
