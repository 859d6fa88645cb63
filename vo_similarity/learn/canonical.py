"""Canonical scale: a deterministic centring and isotropic zoom of each image.

The same source appears at very different angular sizes and positions in a
survey. Rather than asking the network to learn invariance to a large zoom
range from augmentations alone, each image is first mapped to a canonical
frame: the flux-weighted centroid of its significant emission is moved to the
centre and its radius (flux²-weighted RMS by default, or the radius enclosing a
fixed fraction of the flux) is zoomed towards a fixed fraction of the
half-width — by default only part of the way (``zoom_power`` 0.7), so that
some size information survives. This is the translation and scale part of
moment-based image normalisation (Pei & Lin 1995, "Image normalization for
pattern recognition", Image and Vision Computing 13(10); Abu-Mostafa & Psaltis
1985, IEEE PAMI 7(1)); the second-moment tensor is deliberately *not* whitened,
because the elongation of a source (an edge-on disc against a round blob) is
what distinguishes classes.

The result is one ``[B, 2, 3]`` affine matrix per image in the normalised
coordinates of ``affine_grid`` (output -> input). It is composed with any
further transform (:func:`vo_similarity.learn.augment.compose_affine`) so that every view is a single
``grid_sample`` from the stored pixels, at training and at embedding time.
"""

from __future__ import annotations

import logging

import torch

from vo_similarity.learn.augment import blur
from vo_similarity.learn.config import CanonicalConfig

__all__ = ["canonical_matrices"]

log = logging.getLogger(__name__)

#: 1.4826 x MAD estimates the standard deviation of Gaussian noise
_MAD_TO_SIGMA = 1.4826


def _lower_median_by_sort(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """:func:`_lower_median` from a sort and a gather only, operations ONNX has.

    Invalid entries become +inf, so they sort after all valid ones; the lower
    median is then at index ``(count - 1) // 2``.
    """
    ordered = torch.sort(torch.where(valid, values, torch.full_like(values, float("inf"))),
                         dim=1).values
    count = valid.sum(1)
    middle = torch.gather(ordered, 1, ((count - 1).clamp_min(0) // 2).unsqueeze(1)).squeeze(1)
    return torch.where(count > 0, middle, torch.zeros_like(middle))


def _lower_median(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per row, the lower median of the ``valid`` entries of ``values`` ``[B, N]``; 0 where none.

    ``torch.nanmedian`` (which returns the lower of the two middle values for an
    even count). ONNX has no nanmedian: while the embedding is exported for the
    light client (:mod:`vo_similarity.embed.onnx_export`) the same values come
    from :func:`_lower_median_by_sort` (equal to the last bit; 7x slower here in
    eager mode on a CPU, hence not always).
    """
    if torch.onnx.is_in_onnx_export():
        return _lower_median_by_sort(values, valid)
    masked = torch.where(valid, values, torch.full_like(values, float("nan")))
    return torch.nan_to_num(torch.nanmedian(masked, dim=1).values, nan=0.0)


def _background(smoothed: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image robust background level and noise: median and 1.4826 MAD of the valid pixels.

    An image with no valid pixel gets background 0 and noise 0.
    """
    flat = smoothed.flatten(1)
    mask = valid.flatten(1)
    med = _lower_median(flat, mask)
    mad = _lower_median((flat - med[:, None]).abs(), mask)
    return med, _MAD_TO_SIGMA * mad


def _enclosed_flux_radius(weights: torch.Tensor, radius2: torch.Tensor, total: torch.Tensor,
                          fraction: float, smallest: float) -> torch.Tensor:
    """Per image, the distance from the centroid enclosing ``fraction`` of the weights."""
    n = weights.shape[1]
    r2_sorted, order = torch.sort(radius2, dim=1)
    cum = torch.cumsum(torch.gather(weights, 1, order), dim=1)
    idx = (cum < fraction * total[:, None]).sum(1).clamp(max=n - 1)
    return torch.gather(r2_sorted, 1, idx[:, None]).squeeze(1).sqrt().clamp_min(smallest)


@torch.no_grad()
def canonical_matrices(images: torch.Tensor, cfg: CanonicalConfig) -> torch.Tensor:
    """The affine matrices ``[B, 2, 3]`` that centre and scale each image of ``images``.

    Steps, per image (values in [0, 1], any side length):

    1. smooth with a Gaussian of ``cfg.smooth_sigma`` x (side / 64) pixels;
    2. background ``b`` and noise ``s`` from the median and MAD of the smoothed pixels
       that are not zero (exact zeros are padding outside a primary beam or the sky
       coverage, or sky clipped to black);
    3. weights ``w = max(0, smoothed - b - nsigma * s)`` (significant emission only);
    4. centroid ``c`` = the ``w``-weighted mean position;
    5. radius ``r``: with ``cfg.radius == "flux"`` the distance from ``c`` enclosing
       ``cfg.flux_fraction`` of ``sum(w)``; with ``"rms"`` the ``w²``-weighted RMS
       distance from ``c``, a smooth function of the pixels (a faint component
       cannot make it jump, as it can the enclosed-flux radius) that weights the
       bright structure most;
    6. zoom ``z = (cfg.fill / r) ** cfg.zoom_power``, clamped to
       ``[cfg.zoom_min, cfg.zoom_max]``; the centre offset is clamped to
       ``cfg.max_shift`` of the half-width.

    An image without significant emission (blank, constant, all zero) gets
    the identity. Sampling through the result maps ``c`` to the centre and
    the circle of radius ``r`` to radius ``z * r`` (``cfg.fill`` when
    ``zoom_power`` is 1 and the zoom is not clamped).

    Args:
        images: ``[B, 1, H, W]`` (any float dtype; computed in float32).
        cfg: the canonical-frame parameters.

    Returns:
        float32 ``[B, 2, 3]`` on the images' device, in ``affine_grid``'s
        normalised coordinates (output -> input, ``align_corners=False``).
    """
    x = images.float()
    b, _, h, w = x.shape
    dev = x.device
    sigma = torch.full((b,), cfg.smooth_sigma * h / 64, device=dev)
    # a matched filter for beam-sized emission
    smoothed = blur(x, sigma) if cfg.smooth_sigma > 0 else x
    # exact zeros are padding (outside a primary beam or the sky coverage) or sky
    # clipped to black (photographs): "nonzero" measures on the pixels not zero after
    # smoothing (`blur` is a direct per-channel convolution, so the inside of a zero
    # region stays exactly zero). "unpadded" also drops those whose kernel touched a zero,
    # which leaves a photograph's statistics to the inside of its bright regions: a
    # third of the built-in sample's frames then moved under the invariance test's
    # transforms, 4 % with "nonzero" (benchmarks/RESULTS.md, "The default recipe").
    if cfg.background_pixels == "nonzero":
        valid = smoothed != 0
    else:
        coverage = (x != 0).float()
        valid = (blur(coverage, sigma) if cfg.smooth_sigma > 0 else coverage) > 0.999
    bg, noise = _background(smoothed, valid)
    weights = (smoothed.flatten(1) - (bg + cfg.nsigma * noise)[:, None]).clamp_min(0)
    total = weights.sum(1)
    # pixel centres in normalised coordinates (align_corners=False)
    ys = (2 * torch.arange(h, device=dev, dtype=torch.float32) + 1) / h - 1
    xs = (2 * torch.arange(w, device=dev, dtype=torch.float32) + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    gx, gy = gx.reshape(1, -1), gy.reshape(1, -1)
    ok = total > 1e-6 * h * w
    safe = torch.where(ok, total, torch.ones_like(total))
    cx = (weights * gx).sum(1) / safe
    cy = (weights * gy).sum(1) / safe
    radius2 = (gx - cx[:, None]) ** 2 + (gy - cy[:, None]) ** 2
    smallest = 1.0 / max(h, w)  # half a pixel: a single bright pixel has a size, not zero
    if cfg.radius == "rms":  # a smooth function of the pixels: no component jumps in or out
        w2 = weights**2
        rms2 = (w2 * radius2).sum(1) / w2.sum(1).clamp_min(1e-30)
        radius = rms2.sqrt().clamp_min(smallest)  # blank images: identity below
    else:
        radius = _enclosed_flux_radius(weights, radius2, safe, cfg.flux_fraction, smallest)
    zoom = (cfg.fill / radius).pow(cfg.zoom_power).clamp(cfg.zoom_min, cfg.zoom_max)
    one, zero = torch.ones_like(zoom), torch.zeros_like(zoom)
    zoom = torch.where(ok, zoom, one)
    cx = torch.where(ok, cx, zero).clamp(-cfg.max_shift, cfg.max_shift)
    cy = torch.where(ok, cy, zero).clamp(-cfg.max_shift, cfg.max_shift)
    inv = 1 / zoom
    mats = torch.stack([inv, zero, cx, zero, inv, cy], 1).view(b, 2, 3)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("canonical zoom: median %.2f, range %.2f-%.2f, %d blank",
                  float(zoom.median()), float(zoom.min()), float(zoom.max()), int((~ok).sum()))
    return mats
