"""Upper bound for the synthetic sky: how well can a *supervised* CNN separate its classes?

The self-supervised model is judged on the synthetic ALMA-like sky by macro
precision@10 (issue 3 asks >= 0.9). This script checks that the target is
reachable at all: a small supervised CNN (4 conv blocks, 64 px, right-angle
rotation/flip augmentation) is trained on labelled images and its penultimate
features are scored with the same precision@10. If it cannot reach ~0.9, the
classes are too hard and the generator needs easing, not the model.

    .venv/bin/python benchmarks/synthetic_separability.py [--train 3600] [--epochs 10]

Measured on the 2-core development machine (shared): 3600 training images,
10 epochs, ~15 min: accuracy 0.971, precision@10 0.951.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vo_similarity.ingest import synthetic


def prepare(images: np.ndarray) -> torch.Tensor:
    """2×2 binning to 64 px, percentile clip, asinh stretch (as ingest does)."""
    x = np.nan_to_num(images, nan=0.0)
    n, s, _ = x.shape
    x = x.reshape(n, s // 2, 2, s // 2, 2).mean((2, 4))
    lo = np.percentile(x, 0.5, axis=(1, 2), keepdims=True)
    hi = np.percentile(x, 99.9, axis=(1, 2), keepdims=True)
    x = np.clip((x - lo) / (hi - lo + 1e-12), 0, 1)
    x = np.arcsinh(10 * x) / np.arcsinh(10)
    return torch.from_numpy(x[:, None].astype(np.float32))


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
                         nn.ReLU(), nn.MaxPool2d(2))


def precision_at_10(features: torch.Tensor, labels: np.ndarray) -> float:
    e = F.normalize(features, dim=1).numpy()
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1)[:, :10]
    return float((labels[top] == labels[:, None]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3600, help="training images")
    parser.add_argument("--test", type=int, default=900, help="test images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()

    x_train, l_train = synthetic.render_many(args.train, seed=100)
    x_test, l_test = synthetic.render_many(args.test, seed=200)
    index = {c: i for i, c in enumerate(synthetic.CLASSES)}
    y_train = torch.tensor([index[c] for c in l_train])
    y_test = np.array([index[c] for c in l_test])
    x_train, x_test = prepare(x_train), prepare(x_test)
    print(f"rendered {args.train}+{args.test} images in {time.perf_counter() - start:.0f} s")

    body = nn.Sequential(conv_block(1, 24), conv_block(24, 48), conv_block(48, 96),
                         conv_block(96, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    classifier = nn.Linear(128, len(synthetic.CLASSES))
    params = [*body.parameters(), *classifier.parameters()]
    opt = torch.optim.AdamW(params, 2e-3, weight_decay=1e-4)
    steps = args.epochs * (args.train // 64 + 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    for epoch in range(args.epochs):
        body.train()
        for batch in torch.randperm(args.train).split(64):
            x = torch.rot90(x_train[batch], int(torch.randint(4, (1,))), (2, 3))
            if torch.rand(1) < 0.5:
                x = x.flip(3)
            loss = F.cross_entropy(classifier(body(x)), y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        body.eval()
        with torch.no_grad():
            features = body(x_test)
        accuracy = float((classifier(features).argmax(1).numpy() == y_test).mean())
        print(f"epoch {epoch}: test accuracy {accuracy:.3f}, "
              f"precision@10 {precision_at_10(features, y_test):.3f}, "
              f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
