"""Batched augmentations with parameters drawn per sample, on the batch's device.

SimCLR (Chen et al. 2020, arXiv:2002.05709) learns what two views of one image
have in common, so every image of a batch needs its own random transform: one
affine matrix per sample, applied to the whole batch by a single
``affine_grid``/``grid_sample`` call, then a logarithmic intensity stretch, a Gaussian beam
blur (a grouped convolution with one kernel per sample) and noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vo_similarity.learn.config import AugmentConfig

__all__ = [
    "augment_batch",
    "blur",
    "compose_affine",
    "random_affine_matrices",
    "rotation_matrices",
    "stretch",
    "warp",
]


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def random_affine_matrices(
    n: int,
    gen: torch.Generator,
    *,
    rotation_deg: float,
    flip_prob: float,
    shear_deg: float,
    scale_min: float,
    scale_max: float,
    offset: float,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw ``n`` affine matrices ``[n, 2, 3]`` mapping output to input coordinates.

    Each is ``T @ R(angle) @ Sh(shear) @ S(scale) @ F(flip)`` in the normalised
    coordinates of ``affine_grid``; a zoom factor ``s`` > 1 enlarges the image.
    """
    angle = torch.deg2rad(_uniform(n, -rotation_deg, rotation_deg, gen, device))
    shear = torch.tan(torch.deg2rad(_uniform(n, -shear_deg, shear_deg, gen, device)))
    scale = torch.exp(_uniform(n, math.log(scale_min), math.log(scale_max), gen, device))
    flip = torch.where(torch.rand(n, generator=gen, device=device) < flip_prob, -1.0, 1.0)
    shift = _uniform(2 * n, -offset, offset, gen, device).view(n, 2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    rot = torch.stack([cos, -sin, sin, cos], 1).view(n, 2, 2)
    sh = torch.stack([one, shear, zero, one], 1).view(n, 2, 2)
    # grid_sample maps output to input positions, so the zoom divides.
    sc = torch.diag_embed(torch.stack([flip / scale, 1 / scale], 1))
    lin = rot @ sh @ sc
    return torch.cat([lin, shift.unsqueeze(-1)], dim=2)


def rotation_matrices(n_rotations: int, *, flips: bool = True, device="cpu") -> torch.Tensor:
    """The affine matrices of the dihedral group D_n: ``n`` rotations, each optionally flipped."""
    angles = torch.arange(n_rotations, device=device) * (2 * math.pi / n_rotations)
    mats = []
    for sign in ((1.0, -1.0) if flips else (1.0,)):
        cos, sin = torch.cos(angles), torch.sin(angles)
        m = torch.zeros(n_rotations, 2, 3, device=device)
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = sign * cos, -sin, sign * sin, cos
        mats.append(m)
    return torch.cat(mats)


def compose_affine(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The affine map ``x -> outer(inner(x))`` of two batches of ``[B, 2, 3]`` matrices.

    With ``affine_grid`` semantics (output -> input coordinates), sampling
    through ``compose_affine(frame, transform)`` equals resampling the image
    into ``frame`` first and applying ``transform`` to the result, in one step.
    """
    lin = outer[:, :, :2] @ inner[:, :, :2]
    shift = (outer[:, :, :2] @ inner[:, :, 2:]).squeeze(-1) + outer[:, :, 2]
    return torch.cat([lin, shift.unsqueeze(-1)], dim=2)


def warp(images: torch.Tensor, matrices: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Resample ``images`` [B, C, H, W] through per-sample ``matrices`` [B, 2, 3] to ``size``."""
    b, c, h, _ = images.shape
    size = size or h
    grid = F.affine_grid(matrices.to(images.dtype), [b, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def stretch(images: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Per-sample logarithmic stretch (``strength`` > 0) or its inverse (< 0) of images in [0, 1].

    ``log1p(k x) / log1p(k)`` with ``k = expm1(4 |strength|)`` brightens faint
    structure like the log/asinh stretches used for display (the two agree to
    first order); its inverse ``expm1(x log1p(k)) / k`` darkens it; zero leaves
    the image as it is. ``log1p``/``expm1`` cost a third of ``asinh``/``sinh`` on CPUs.
    """
    k = torch.expm1(4 * strength.abs()).clamp_min(1e-4).view(-1, 1, 1, 1).to(images.dtype)
    lk = torch.log1p(k)
    x = images.clamp(0, 1)
    forward = torch.log1p(k * x) / lk
    inverse = torch.expm1(x * lk) / k
    return torch.where(strength.view(-1, 1, 1, 1) >= 0, forward, inverse)


def blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample separable Gaussian blur (a circular restoring beam) with ``sigma`` [B] pixels."""
    b, c, h, w = images.shape
    radius = max(1, math.ceil(3 * float(sigma.max()))) if b else 1
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    s = sigma.clamp_min(1e-3).to(images.dtype).view(-1, 1)
    kernel = torch.exp(-0.5 * (x / s) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, K]
    flat = images.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"),
                    kernel.view(b * c, 1, 1, -1), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"),
                    kernel.view(b * c, 1, -1, 1), groups=b * c)
    return flat.view(b, c, h, w)


def augment_batch(
    images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator, size: int | None = None,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """One random view of each image of ``images`` [B, 1, H, W] (values in [0, 1]).

    Args:
        images: the batch, on any device.
        cfg: the ranges; every parameter is drawn independently per sample.
        gen: a generator on the batch's device (seed it for repeatable views).
        size: output side in pixels (default: the input's).
        base: optional ``[B, 2, 3]`` affine matrices applied before the random one
            (e.g. :func:`vo_similarity.learn.canonical.canonical_matrices`); the two
            are composed, so the pixels are resampled once.

    Returns:
        The views, ``[B, 1, size, size]``, clamped to [0, 1].
    """
    b = images.shape[0]
    dev = images.device
    mats = random_affine_matrices(
        b, gen, rotation_deg=cfg.rotation_deg, flip_prob=cfg.flip_prob, shear_deg=cfg.shear_deg,
        scale_min=cfg.scale_min, scale_max=cfg.scale_max, offset=cfg.offset, device=dev,
    )
    if base is not None:
        mats = compose_affine(base.to(mats.dtype), mats)
    out = warp(images, mats, size)
    if cfg.stretch > 0:
        out = stretch(out, _uniform(b, -cfg.stretch, cfg.stretch, gen, dev))
    if cfg.blur_sigma > 0:
        out = blur(out, _uniform(b, 0.0, cfg.blur_sigma, gen, dev))
    if cfg.noise_std > 0:
        std = _uniform(b, 0.0, cfg.noise_std, gen, dev).view(-1, 1, 1, 1)
        out = out + std * torch.randn(out.shape, generator=gen, device=dev, dtype=out.dtype)
    return out.clamp(0, 1)
