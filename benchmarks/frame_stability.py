"""How stable is the canonical frame under the invariance test's transforms? (no training)

For each image and its randomly rotated, flipped, sheared and rescaled copy (the
copies of ``vo-similarity evaluate``, for the same images: its split, and up to its
5,000-image cap), compute both canonical frames and compare
them through the known transform:

* zoom error: ``|log z_copy - log z_image + zoom_power * log f|``, with ``f`` the
  copy's magnification (a frame that follows the source gives 0);
* centre error: distance, in half-widths, between the copy's canonical centre and
  the image's canonical centre carried through the transform.

An image whose two frames disagree (zoom error > 0.2 or centre error > 0.1) can
hardly find its copy first, whatever the network; the share of such images bounds
the invariance a recipe can reach. Used for the canonical-frame choices in
``benchmarks/RESULTS.md`` ("The default recipe").

    python benchmarks/frame_stability.py WORK [--split val --val-fraction 0.2] \\
        [--variant NAME '{"nsigma": 3}' ...]
"""

from __future__ import annotations

import argparse
import json

import torch

from vo_similarity.evaluate.evaluate import InvarianceTransform, invariance_matrices
from vo_similarity.learn.augment import warp
from vo_similarity.learn.canonical import canonical_matrices
from vo_similarity.learn.config import CanonicalConfig, TrainConfig
from vo_similarity.learn.data import load_images
from vo_similarity.workdir import WorkDir


def frame_errors(images: torch.Tensor, copies: torch.Tensor, mats: torch.Tensor,
                 cfg: CanonicalConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zoom and centre errors ``[N]`` of the canonical frame between ``images`` and their
    ``copies`` made through ``mats``, and the images' canonical zooms ``[N]``."""
    a, b = canonical_matrices(images, cfg), canonical_matrices(copies, cfg)
    linear, shift = mats[:, :, :2], mats[:, :, 2]
    magnification = 1 / linear.det().abs().sqrt()  # the matrices map output -> input
    zoom_error = (a[:, 0, 0].log() - b[:, 0, 0].log() + cfg.zoom_power * magnification.log()).abs()
    expected_centre = torch.linalg.solve(linear, a[:, :, 2] - shift)
    centre_error = (b[:, :, 2] - expected_centre).norm(dim=1)
    return zoom_error, centre_error, 1 / a[:, 0, 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--split", default="all", choices=["all", "train", "val"])
    parser.add_argument("--val-fraction", type=float, default=0.0)
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"),
                        help="canonical settings changed from the default (repeatable)")
    args = parser.parse_args(argv)
    try:
        data = load_images(WorkDir(args.workdir), split=args.split, val_fraction=args.val_fraction)
    except (FileNotFoundError, ValueError) as exc:  # e.g. --split val without --val-fraction
        parser.error(str(exc))
    images = data.pixels.all()
    mats = invariance_matrices(len(images), InvarianceTransform())
    copies = warp(images, mats)  # the same for every variant
    variants = [("default", "{}")] + (args.variant or [])
    print(f"{len(images)} images of {args.workdir} (split {args.split})")
    print(f"{'variant':16s} {'zoom err>0.2':>12s} {'>0.1':>6s} {'centre err>0.1':>14s} "
          f"{'either':>7s}  median zoom")
    for name, changes in variants:
        cfg = TrainConfig().replace(canonical={"enabled": True, **json.loads(changes)}).canonical
        zoom_error, centre_error, zoom = frame_errors(images, copies, mats, cfg)
        bad = (zoom_error > 0.2) | (centre_error > 0.1)
        print(f"{name:16s} {(zoom_error > 0.2).float().mean():12.3f} "
              f"{(zoom_error > 0.1).float().mean():6.3f} {(centre_error > 0.1).float().mean():14.3f} "
              f"{bad.float().mean():7.3f}  {zoom.median():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
