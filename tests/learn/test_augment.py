import math

import pytest
import torch

from vo_similarity.learn.augment import (
    augment_batch,
    blur,
    random_affine_matrices,
    rotation_matrices,
    stretch,
    warp,
)
from vo_similarity.learn.config import AugmentConfig

NONE = {"rotation_deg": 0, "flip_prob": 0, "shear_deg": 0, "scale_min": 1, "scale_max": 1,
        "offset": 0}


def test_parameters_differ_per_sample():
    images = torch.rand(1, 1, 24, 24).repeat(16, 1, 1, 1)
    views = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(0))
    flat = views.flatten(1)
    distances = torch.cdist(flat, flat)
    off_diagonal = distances[~torch.eye(16, dtype=bool)]
    assert off_diagonal.min() > 0.1, "two samples received the same transform"
    mats = random_affine_matrices(16, torch.Generator().manual_seed(0), rotation_deg=180,
                                  flip_prob=0.5, shear_deg=10, scale_min=0.8, scale_max=1.2,
                                  offset=0.1)
    assert len({tuple(m.flatten().tolist()) for m in mats}) == 16


def test_same_seed_same_views():
    images = torch.rand(8, 1, 16, 16)
    a = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(3))
    b = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_identity_ranges_preserve_the_image():
    images = torch.rand(4, 1, 16, 16)
    cfg = AugmentConfig(**NONE, stretch=0, noise_std=0, blur_sigma=0)
    out = augment_batch(images, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, images, atol=1e-5)


def test_right_angle_rotation_is_exact():
    images = torch.rand(2, 1, 16, 16)
    quarter = rotation_matrices(4, flips=False)[1:2].repeat(2, 1, 1)
    rotated = warp(images, quarter)
    assert any(torch.allclose(rotated, torch.rot90(images, k, dims=(2, 3)), atol=1e-5)
               for k in (1, 3))


def test_scale_above_one_enlarges():
    img = torch.zeros(1, 1, 32, 32)
    img[..., 12:20, 12:20] = 1
    mats = random_affine_matrices(1, torch.Generator(), **{**NONE, "scale_min": 2, "scale_max": 2})
    assert float(warp(img, mats).sum()) == pytest.approx(4 * float(img.sum()), rel=0.05)


def test_stretch_keeps_range_and_order():
    x = torch.linspace(0, 1, 101).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    out = stretch(x, torch.tensor([-0.8, 0.0, 0.8]))
    assert torch.allclose(out[1], x[1], atol=1e-3)
    assert torch.all(out[:, ..., 1:] >= out[:, ..., :-1])
    assert torch.allclose(out[..., 0], torch.zeros(3, 1, 1)) and torch.allclose(
        out[..., -1], torch.ones(3, 1, 1), atol=1e-5)
    assert out[2, 0, 0, 20] > x[0, 0, 0, 20] > out[0, 0, 0, 20]  # brighten vs darken faint flux


def test_blur_keeps_flux_and_widens_per_sample():
    img = torch.zeros(2, 1, 33, 33)
    img[:, :, 16, 16] = 1
    out = blur(img, torch.tensor([0.5, 2.0]))
    assert torch.allclose(out.sum((1, 2, 3)), torch.ones(2), atol=1e-4)
    assert out[0, 0, 16, 16] > out[1, 0, 16, 16]
    sigma = math.sqrt((out[1, 0, 16] * (torch.arange(33) - 16.0) ** 2).sum() / out[1, 0, 16].sum())
    assert float(sigma) == pytest.approx(2.0, rel=0.05)


def test_output_size_and_device():
    images = torch.rand(3, 1, 20, 20)
    out = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(0), size=12)
    assert out.shape == (3, 1, 12, 12) and out.device == images.device
    assert out.min() >= 0 and out.max() <= 1
