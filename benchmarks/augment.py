"""Cost of the batched augmentations within a SimCLR training step.

Times, in one process and interleaved (so that load from other processes hits
both alike), a full training step with both views augmented on the fly and the
same step fed with views augmented beforehand, and prints images/s of each and
the share of the step the augmentation takes. Target: <= 10 %.

    .venv/bin/python benchmarks/augment.py [--config FILE] [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vo_similarity.learn.augment import augment_batch
from vo_similarity.learn.canonical import canonical_matrices
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.model import autocast_dtype, build_loss, build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="TrainConfig JSON (default: the package default)")
    parser.add_argument("--source-size", type=int, default=128,
                        help="stored image side (ingest's default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(cfg).to(dev).train()
    loss_fn = build_loss(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    amp = autocast_dtype(cfg.precision, dev)
    gen = torch.Generator(dev).manual_seed(0)
    images = torch.rand(cfg.batch_size, 1, args.source_size, args.source_size, device=dev)
    # as in training: the canonical frames are computed once per run, composed into every view
    base = canonical_matrices(images, cfg.canonical) if cfg.canonical.enabled else None

    def views() -> tuple[torch.Tensor, torch.Tensor]:
        return (augment_batch(images, cfg.augment, gen, cfg.image_size, base),
                augment_batch(images, cfg.augment, gen, cfg.image_size, base))

    def step(v1: torch.Tensor, v2: torch.Tensor) -> None:
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            z = model(torch.cat([v1, v2]))
        loss = loss_fn(*z.float().chunk(2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    fixed = views()
    step(*fixed)  # warm-up
    with_aug, without_aug, aug_only = [], [], []
    for _ in range(args.repeats):
        with_aug.append(timed(lambda: step(*views())))
        without_aug.append(timed(lambda: step(*fixed)))
        aug_only.append(timed(views))
    t_with, t_without, t_aug = (statistics.median(x) for x in (with_aug, without_aug, aug_only))
    b = cfg.batch_size
    print(f"config: {cfg.backbone} {cfg.stem} stem, width {cfg.width}, {cfg.image_size} px from "
          f"{args.source_size} px, canonical frame {cfg.canonical.enabled}, batch {b}, "
          f"autocast {amp}, device {dev}, threads {args.threads}")
    print(f"step with augmentation:    {b / t_with:8.1f} images/s  ({t_with * 1e3:.0f} ms)")
    print(f"step without augmentation: {b / t_without:8.1f} images/s  ({t_without * 1e3:.0f} ms)")
    print(f"augmentation alone (2 views): {t_aug * 1e3:.0f} ms")
    print(f"augmentation share of the step: {t_aug / t_with:.1%} "
          f"(from the difference of the steps: {(t_with - t_without) / t_with:.1%}); target <= 10%")


if __name__ == "__main__":
    main()
