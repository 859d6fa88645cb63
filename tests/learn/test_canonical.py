import json

import numpy as np
import pytest
import torch

from vo_similarity.learn.augment import augment_batch, compose_affine, random_affine_matrices, warp
from vo_similarity.learn.canonical import canonical_matrices
from vo_similarity.learn.config import AugmentConfig, CanonicalConfig, TrainConfig
from vo_similarity.learn.model import build_model, embed_tensor
from vo_similarity.learn.train import train

#: the 90 %-flux radius above 3 sigma, every size to one, free centring
ON = CanonicalConfig(enabled=True, radius="flux", fill=0.5, nsigma=3.0, zoom_power=1.0,
                     zoom_min=0.25, zoom_max=8.0, max_shift=0.5)
#: the flux²-weighted RMS radius of the significant flux
RMS = CanonicalConfig(enabled=True, radius="rms", fill=0.35, nsigma=3.0, zoom_power=1.0,
                      zoom_min=0.25, zoom_max=8.0, max_shift=0.5)


def source(size: int, cx: float, cy: float, scale: float, noise: float = 0.0, seed: int = 0,
           sky: bool = True):
    """An asymmetric source (an elongated blob and an off-centre knot); with ``sky``, on a
    pedestal with noise inside a circular primary beam."""
    y, x = (np.mgrid[:size, :size] + 0.5) / (size / 2) - 1
    u, v = (x - cx) / scale, (y - cy) / scale
    img = np.exp(-(u / 0.5) ** 2 - (v / 0.2) ** 2) + 0.8 * np.exp(-((u - 0.4) ** 2 + (v + 0.3) ** 2) / 0.02)
    if not sky:
        return torch.from_numpy((0.8 * img).astype(np.float32))[None, None]
    img = 0.05 + 0.8 * img + np.random.default_rng(seed).normal(0, noise, img.shape)
    img[np.hypot(x, y) > 0.98] = 0  # padding outside the primary beam
    return torch.from_numpy(np.clip(img, 0, 1).astype(np.float32))[None, None]


@pytest.mark.parametrize("cfg", [ON, RMS], ids=["flux", "rms"])
def test_zoomed_and_shifted_copies_share_one_canonical_view(cfg):
    shapes = [(0.0, 0.0, 0.25), (0.2, -0.1, 0.5), (-0.1, 0.2, 0.125)]  # x2 larger / x2 smaller
    noisy = torch.cat([source(128, *s, noise=0.02, seed=i) for i, s in enumerate(shapes)])
    clean = torch.cat([source(128, *s, sky=False) for s in shapes])
    mats = canonical_matrices(noisy, cfg)
    zooms = 1 / mats[:, 0, 0]
    # the smoothing kernel widens small sources a little (sizes add in quadrature)
    assert float(zooms[0] / zooms[1]) == pytest.approx(2.0, rel=0.1)
    assert float(zooms[2] / zooms[0]) == pytest.approx(2.0, rel=0.2)
    # the centroid is that of the flux, slightly off the blob's centre towards the knot
    assert mats[1, :, 2].tolist() == pytest.approx([0.2 + 2 * float(mats[0, 0, 2]),
                                                    -0.1 + 2 * float(mats[0, 1, 2])], abs=0.02)
    # the frames found in the noisy images bring the noise-free sources into register:
    # L1 distance of the flux distributions, 0 (equal) to 2 (disjoint)
    def distance(a, b):
        return float((a / a.sum() - b / b.sum()).abs().sum())

    views = warp(clean, mats, 64)
    raw = warp(clean, torch.eye(2, 3).repeat(3, 1, 1), 64)
    assert distance(views[1], views[0]) < 0.15 and distance(raw[1], raw[0]) > 1.0
    assert distance(views[2], views[0]) < 0.3 and distance(raw[2], raw[0]) > 1.0


def test_background_pixels_rule_for_clipped_black_sky():
    """A photograph whose sky is clipped to zeros: "nonzero" measures the background on
    the dark sky around the source; "unpadded" only inside the bright region, whose
    median then sits so high that the weighted emission shrinks to the core."""
    img = source(128, 0.0, 0.0, 0.5, sky=False)  # no pedestal: the sky is exactly 0
    img = torch.where(img < 0.02, torch.zeros_like(img), img)
    common = {"enabled": True, "radius": "rms", "fill": 0.35, "nsigma": 1.0, "zoom_power": 1.0,
              "zoom_min": 0.25, "zoom_max": 8.0, "max_shift": 0.5}
    nonzero = 1 / canonical_matrices(img, CanonicalConfig(**common))[:, 0, 0]
    unpadded = 1 / canonical_matrices(
        img, CanonicalConfig(**common, background_pixels="unpadded"))[:, 0, 0]
    assert float(unpadded) > 1.2 * float(nonzero)
    with pytest.raises(ValueError, match="background_pixels"):
        TrainConfig(canonical={"background_pixels": "bogus"})


@pytest.mark.parametrize("cfg", [ON, RMS], ids=["flux", "rms"])
def test_zoom_power_normalises_part_of_the_size(cfg):
    """With zoom_power 0.5 a source twice as large gets a zoom sqrt(2) smaller, not 2."""
    pair = torch.cat([source(128, 0.0, 0.0, 0.25, noise=0.02), source(128, 0.0, 0.0, 0.5, noise=0.02)])
    full = 1 / canonical_matrices(pair, cfg)[:, 0, 0]
    half = 1 / canonical_matrices(pair, CanonicalConfig(**{**vars(cfg), "zoom_power": 0.5}))[:, 0, 0]
    assert float(half[0] / half[1]) == pytest.approx(float(full[0] / full[1]) ** 0.5, rel=1e-4)
    assert float(half[0] / half[1]) == pytest.approx(2 ** 0.5, rel=0.1)
    with pytest.raises(ValueError, match="zoom_power"):
        TrainConfig(canonical={"enabled": True, "zoom_power": 0.0})


@pytest.mark.parametrize("cfg", [ON, RMS], ids=["flux", "rms"])
def test_rotation_leaves_the_zoom_unchanged(cfg):
    img = source(64, 0.1, 0.0, 0.35)
    turned = torch.rot90(img, 1, dims=(2, 3))
    mats = canonical_matrices(torch.cat([img, turned]), cfg)
    assert float(mats[0, 0, 0]) == pytest.approx(float(mats[1, 0, 0]), rel=1e-4)


@pytest.mark.parametrize("cfg", [ON, RMS], ids=["flux", "rms"])
@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_blank_and_constant_images_get_the_identity(value, cfg):
    images = torch.full((3, 1, 32, 32), value)
    mats = canonical_matrices(images, cfg)
    assert torch.isfinite(mats).all()
    assert torch.allclose(mats, torch.eye(2, 3).repeat(3, 1, 1))
    views = warp(images, mats, 16)
    assert torch.isfinite(views).all()


def test_pure_noise_does_not_produce_nan_and_stays_clamped():
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    mats = canonical_matrices(images, CanonicalConfig(enabled=True, zoom_min=0.5, zoom_max=2.0))
    assert torch.isfinite(mats).all()
    zooms = 1 / mats[:, 0, 0]
    assert (zooms >= 0.5 - 1e-6).all() and (zooms <= 2.0 + 1e-6).all()
    assert (mats[:, :, 2].abs() <= 0.5 + 1e-6).all()


def test_compose_affine_equals_two_warps():
    img = source(64, 0.1, -0.1, 0.4)
    gen = torch.Generator().manual_seed(2)
    outer = random_affine_matrices(1, gen, rotation_deg=180, flip_prob=0.5, shear_deg=10,
                                   scale_min=0.8, scale_max=1.2, offset=0.1)
    inner = random_affine_matrices(1, gen, rotation_deg=180, flip_prob=0.5, shear_deg=10,
                                   scale_min=0.8, scale_max=1.2, offset=0.1)
    once = warp(img, compose_affine(outer, inner))
    twice = warp(warp(img, outer), inner)
    assert float((once - twice).abs().mean()) < 0.01


def test_augment_with_canonical_base_and_identity_ranges_is_the_canonical_view():
    images = torch.cat([source(64, 0.2, 0.1, 0.3), source(64, 0.0, 0.0, 0.5)])
    base = canonical_matrices(images, ON)
    cfg = AugmentConfig(rotation_deg=0, flip_prob=0, shear_deg=0, scale_min=1, scale_max=1,
                        offset=0, stretch=0, noise_std=0, blur_sigma=0)
    out = augment_batch(images, cfg, torch.Generator().manual_seed(0), 32, base)
    assert torch.allclose(out, warp(images, base, 32).clamp(0, 1), atol=1e-5)


def test_embedding_with_canonical_frame_ignores_zoom_and_shift():
    cfg = TrainConfig(width=4, image_size=32, pool_rotations=4, precision="fp32",
                      canonical=vars(ON))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    images = torch.cat([source(64, 0.0, 0.0, 0.3), source(64, 0.2, -0.1, 0.6)])
    e = embed_tensor(model, images, cfg)
    plain = embed_tensor(model, images, cfg.replace(canonical={"enabled": False}))
    assert torch.isfinite(e).all()
    assert float(e[0] @ e[1]) > float(plain[0] @ plain[1])
    assert float(e[0] @ e[1]) > 0.99


def test_old_config_files_load_without_the_canonical_frame(tmp_path):
    data = TrainConfig().to_dict()
    del data["canonical"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    assert TrainConfig.load(path).canonical.enabled is False
    # saved before the keys radius, zoom_power and background_pixels: their original behaviour
    first = {k: v for k, v in vars(ON).items()
             if k not in ("radius", "zoom_power", "background_pixels")}
    path.write_text(json.dumps({**data, "canonical": first}))
    assert TrainConfig.load(path).canonical == CanonicalConfig(**{**vars(ON),
                                                                  "background_pixels": "unpadded"})
    path.write_text(json.dumps({**data, "canonical": {**first, "background_pixels": "nonzero"}}))
    assert TrainConfig.load(path).canonical == ON
    # a partial, hand-written frame takes the defaults, as the constructor does
    path.write_text(json.dumps({**data, "canonical": {"enabled": True, "fill": 0.4}}))
    assert TrainConfig.load(path).canonical == CanonicalConfig(fill=0.4)
    assert TrainConfig(canonical={"enabled": True, "fill": 0.4}).canonical == CanonicalConfig(fill=0.4)
    cfg = TrainConfig(canonical={"enabled": True, "fill": 0.6})
    cfg.save(path)
    assert TrainConfig.load(path).canonical == CanonicalConfig(enabled=True, fill=0.6)
    with pytest.raises(ValueError, match="canonical"):
        TrainConfig.from_dict({**data, "canonical": {"bogus": 1}})
    with pytest.raises(ValueError, match="zoom_min"):
        TrainConfig(canonical={"zoom_min": 2.0, "zoom_max": 1.0})


def test_training_and_evaluation_with_the_canonical_frame(tiny_workdir, tiny_config):
    from vo_similarity.evaluate.evaluate import evaluate_model

    cfg = tiny_config.replace(canonical={"enabled": True}, val_fraction=0.25)
    result = train(tiny_workdir, cfg, tiny_workdir.model("canon"), progress=False)
    assert len(result.losses) == cfg.epochs and all(np.isfinite(result.losses))
    assert TrainConfig.load(tiny_workdir.model("canon").config).canonical.enabled
    report = evaluate_model(tiny_workdir, "canon", grid=False, progress=False)
    assert 0 <= report["metrics"]["model"]["invariance"]["top1"] <= 1


def test_canonical_flag_of_the_train_command():
    import argparse

    from vo_similarity.learn.cli import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert build_config(parser.parse_args(["W", "--model", "m"])).canonical.enabled
    assert build_config(parser.parse_args(["W", "--model", "m", "--canonical"])).canonical.enabled
    assert not build_config(parser.parse_args(["W", "--model", "m", "--no-canonical"])
                            ).canonical.enabled


def _nanmedian_background(smoothed, valid):
    """The former ``_background``, by ``torch.nanmedian`` (which ONNX lacks): the reference."""
    from vo_similarity.learn.canonical import _MAD_TO_SIGMA

    flat = smoothed.flatten(1)
    masked = torch.where(valid.flatten(1), flat, torch.full_like(flat, float("nan")))
    med = torch.nanmedian(masked, dim=1).values
    mad = torch.nanmedian((masked - med[:, None]).abs(), dim=1).values
    return torch.nan_to_num(med, nan=0.0), _MAD_TO_SIGMA * torch.nan_to_num(mad, nan=0.0)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 4096])
def test_sort_median_equals_nanmedian_exactly(n):
    """Odd and even counts, empty and full masks, ties (quantised values) and zeros."""
    from vo_similarity.learn.canonical import _MAD_TO_SIGMA, _lower_median_by_sort

    gen = torch.Generator().manual_seed(n)
    values = torch.rand(40, n, generator=gen)
    values[::3] = (values[::3] * 8).floor() / 8  # many ties
    values[1::5] = 0.0
    valid = torch.rand(40, n, generator=gen) > torch.linspace(0, 1, 40)[:, None]
    valid[0], valid[-1] = False, True  # empty and full
    counts = valid.sum(1)
    if n > 1:
        assert (counts % 2 == 0).any() and (counts % 2 == 1).any()
    masked = torch.where(valid, values, torch.full_like(values, float("nan")))
    reference = torch.nan_to_num(torch.nanmedian(masked, dim=1).values, nan=0.0)
    assert torch.equal(_lower_median_by_sort(values, valid), reference)
    # and so the background's MAD, a median of distances from that median
    med = _lower_median_by_sort(values, valid)
    mad = _MAD_TO_SIGMA * _lower_median_by_sort((values - med[:, None]).abs(), valid)
    images, mask = values.view(40, 1, 1, n), valid.view(40, 1, 1, n)
    assert torch.equal(mad, _nanmedian_background(images, mask)[1])
    # the check can fail: the upper median differs wherever a count is even
    upper = torch.sort(torch.where(valid, values, torch.full_like(values, float("inf"))),
                       dim=1).values.gather(1, (counts // 2).clamp(max=n - 1)[:, None])[:, 0]
    if n > 1:
        assert not torch.equal(torch.where(counts > 0, upper, 0.0), reference)


@pytest.mark.parametrize("pixels", ["nonzero", "unpadded"])
@pytest.mark.parametrize("radius", ["flux", "rms"])
def test_canonical_matrices_unchanged_by_the_sort_median(monkeypatch, pixels, radius):
    """The exported graph's median (by sort) gives the matrices of the eager one."""
    from vo_similarity.learn import canonical

    cfg = CanonicalConfig(enabled=True, radius=radius, background_pixels=pixels)
    images = torch.cat([source(64, 0.1 * i - 0.2, 0.05 * i, 0.2 + 0.1 * i, noise=0.02, seed=i)
                        for i in range(5)] + [torch.zeros(1, 1, 64, 64),
                                              source(64, 0, 0, 0.3, sky=False)])
    mats = canonical_matrices(images, cfg)
    monkeypatch.setattr(canonical, "_lower_median", canonical._lower_median_by_sort)
    assert torch.equal(mats, canonical_matrices(images, cfg))
    monkeypatch.setattr(canonical, "_background", _nanmedian_background)
    assert torch.equal(mats, canonical_matrices(images, cfg))
