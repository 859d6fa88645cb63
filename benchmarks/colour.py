"""Is colour a lever for the built-in photographs' categories (issue 13)?

The pipeline reads PNG and JPEG as luminance (``vo_similarity.ingest.readers``),
as an archive's single-band images are. Stellarium's photographs are in colour,
and colour separates some of the categories that the grey model confuses
(emission nebulae, red in Hα, against galaxies). Two measurements, both scored
like ``vo-similarity evaluate`` (macro precision@10 against the manifest's
``category``, tuning and held-out halves, ``category_precision``):

``--features``
    colour statistics alone (a luminance-weighted 8 × 8 histogram of the
    chromaticities r/(r+g+b), g/(r+g+b)) and fused with a model's embeddings
    (``--model``: concatenated with weight ``alpha``);
``--train grey|colour|colour-jitter``
    the same SimCLR recipe (the shipped config's augmentations, lightly's NT-Xent,
    the package's backbone and D8-pooled embedding, no canonical frame) trained
    on the photographs at 64 px in grey (Pillow's ITU-R 601 luminance, what
    ingest reads) or in RGB (``colour-jitter``: per-channel gains of ±0.3 in log
    and a random desaturation, so that colour is a cue but not the whole answer).
    The loop is this script's own because the package's trainer takes one
    channel; everything it calls is the package's.

    python benchmarks/colour.py --features --workdir work/builtin --model default
    python benchmarks/colour.py --train colour --epochs 200 --threads 1
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch
from PIL import Image

from vo_similarity.evaluate.metrics import category_precision
from vo_similarity.ingest.manifest import read_manifest
from vo_similarity.ingest.stellarium import builtin_sample
from vo_similarity.learn.augment import augment_batch
from vo_similarity.learn.backbone import build_backbone, feature_dim
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.model import SimCLR, autocast_dtype, build_loss, embed_tensor
from vo_similarity.learn.pretrained import DATA
from vo_similarity.learn.train import _lr_lambda
from vo_similarity.workdir import WorkDir

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def load_photographs(work: WorkDir, size: int, mode: str):
    """The built-in sample's images that the manifest holds: pixels [N, C, size, size]
    in [0, 1] (aspect kept, zero-padded), image ids and categories."""
    manifest = read_manifest(work.manifest)
    known = {str(o): (int(i), str(c))
             for o, i, c in zip(manifest["obs_id"], manifest["image_id"], manifest["category"])}
    pixels, ids, cats = [], [], []
    for inp in builtin_sample():
        if inp.obs_id not in known:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow: palette transparency
            im = Image.open(inp.path).convert("L" if mode == "grey" else "RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        a = np.asarray(im, np.float32) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        out = np.zeros((a.shape[0], size, size), np.float32)
        top, left = (size - a.shape[1]) // 2, (size - a.shape[2]) // 2
        out[:, top:top + a.shape[1], left:left + a.shape[2]] = a
        pixels.append(out)
        ids.append(known[inp.obs_id][0])
        cats.append(known[inp.obs_id][1])
    return torch.from_numpy(np.stack(pixels)), np.array(ids), np.array(cats, dtype=object)


def _row(name: str, r: dict) -> str:
    h = r["held_out"]
    per = ", ".join(f"{k} {v:.2f}" for k, v in h["per_class"].items())
    return (f"{name:34s} tuning {r['tuning']['macro']:.3f}  held-out {h['macro']:.3f} "
            f"[{h['ci_low']:.3f}, {h['ci_high']:.3f}]  ({per})")


def _standardised_unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    v = (v - v.mean(0)) / (v.std(0) + 1e-9)
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)


def features(work: WorkDir, model: str | None) -> None:
    x, ids, cats = load_photographs(work, 128, "colour")
    rgb = x.numpy()
    total = rgb.sum(1) + 1e-6
    hists = []
    for s, r, g in zip(total, rgb[:, 0] / total, rgb[:, 1] / total):
        h, _, _ = np.histogram2d(r.ravel(), g.ravel(), bins=8, range=[[0, 1], [0, 1]],
                                 weights=s.ravel() / s.sum())
        hists.append(np.sqrt(h.ravel()))
    colour = _standardised_unit(np.array(hists))
    print(_row("colour histogram alone", category_precision(colour.astype(np.float32), cats, ids)))
    if model is None:
        return
    mdir = work.model(model)
    emb = np.load(mdir.embeddings)
    row = {int(i): n for n, i in enumerate(np.load(mdir.embedding_ids))}
    emb = emb[[row[int(i)] for i in ids]].astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    for alpha in (0.0, 0.3, 0.5, 1.0):
        v = np.hstack([emb, alpha * colour])
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        print(_row(f"model {model!r} + {alpha} x colour",
                   category_precision(v.astype(np.float32), cats, ids)))


def jitter_colour(views: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-channel gains exp(U(-0.3, 0.3)) and a random mix towards luminance."""
    b = views.shape[0]
    gains = torch.exp((torch.rand(b, 3, 1, 1, generator=gen) - 0.5) * 0.6)
    views = views * gains
    grey = (views * torch.from_numpy(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    keep = torch.rand(b, 1, 1, 1, generator=gen)
    return (keep * views + (1 - keep) * grey).clamp(0, 1)


def train(work: WorkDir, mode: str, epochs: int, seed: int) -> None:
    x, ids, cats = load_photographs(work, 128, "grey" if mode == "grey" else "colour")
    cfg = TrainConfig.load(DATA / "simclr_builtin.config.json").replace(
        epochs=epochs, seed=seed, canonical={"enabled": False})
    torch.manual_seed(seed)
    backbone = build_backbone(cfg.backbone, cfg.stem, cfg.width)
    old = backbone.conv1
    backbone.conv1 = torch.nn.Conv2d(x.shape[1], old.out_channels, old.kernel_size, old.stride,
                                     old.padding, bias=False)
    torch.nn.init.kaiming_normal_(backbone.conv1.weight, mode="fan_out", nonlinearity="relu")
    model = SimCLR(backbone, feature_dim(cfg.backbone, cfg.width), cfg.projection_dim)
    loss_fn = build_loss(cfg)
    steps = math.ceil(len(x) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
    amp = autocast_dtype(cfg.precision, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for step in range(steps):
            xb = x[order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
            views = [augment_batch(xb, cfg.augment, gen, cfg.image_size) for _ in range(2)]
            if mode == "colour-jitter":
                views = [jitter_colour(v, gen) for v in views]
            with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                z = model(torch.cat(views)).float()
            loss = loss_fn(z[:len(xb)], z[len(xb):])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 50 == 0 or epoch + 1 == epochs:
            model.eval()
            v = torch.cat([embed_tensor(model, x[i:i + 64], cfg) for i in range(0, len(x), 64)])
            print(_row(f"{mode}, epoch {epoch + 1}, {time.time() - t0:.0f} s, loss {loss.item():.2f}",
                       category_precision(v.numpy(), cats, ids)), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="work/builtin", help="a workdir of the built-in sample")
    p.add_argument("--features", action="store_true", help="colour statistics, alone and fused")
    p.add_argument("--model", help="with --features: the model whose embeddings to fuse")
    p.add_argument("--train", choices=("grey", "colour", "colour-jitter"))
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = WorkDir(args.workdir)
    if args.features:
        features(work, args.model)
    if args.train:
        train(work, args.train, args.epochs, args.seed)
    if not (args.features or args.train):
        p.error("nothing to do: give --features and/or --train")


if __name__ == "__main__":
    main()
