"""Robust scaling, stretch and aspect-preserving resampling."""

from __future__ import annotations

import numpy as np
import pytest

from vo_similarity.ingest.preprocess import (
    PreprocessConfig,
    preprocess,
    resample_square,
    scale_and_stretch,
)
from vo_similarity.ingest.raw_image import InputRejected


def test_percentile_clip_resists_outliers():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(100, 100)).astype(np.float32)
    img[0, 0] = 1e6  # one hot pixel
    linear = scale_and_stretch(img, PreprocessConfig(stretch="linear", clip=(1, 99)))
    assert linear.min() == 0 and linear.max() == 1
    # the hot pixel does not squash the rest: the median stays near the middle
    assert 0.4 < np.median(linear) < 0.6
    assert (linear == 1).mean() == pytest.approx(0.01, abs=0.002)


def test_asinh_lifts_faint_pixels_and_keeps_order():
    x = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    lin = scale_and_stretch(x, PreprocessConfig(stretch="linear", clip=(0, 100)))
    asinh = scale_and_stretch(x, PreprocessConfig(stretch="asinh", clip=(0, 100)))
    log = scale_and_stretch(x, PreprocessConfig(stretch="log", softening=1000, clip=(0, 100)))
    for out in (asinh, log):
        assert np.all(np.diff(out.ravel()) >= 0)
        assert out[0, 0] == 0 and out[-1, -1] == pytest.approx(1)
        assert np.all(out >= lin - 1e-6)  # concave: faint values brought up
    assert asinh[16, 0] > 2 * lin[16, 0]


def test_masked_pixels_become_zero():
    img = np.full((32, 32), 5.0, np.float32)
    img[:16] = np.linspace(1, 2, 16 * 32).reshape(16, 32)
    img[20:, :] = np.nan
    out = scale_and_stretch(img, PreprocessConfig())
    assert np.all(out[20:] == 0) and np.all(np.isfinite(out))


@pytest.mark.parametrize("data,reason", [
    (np.full((16, 16), np.nan, np.float32), "all pixels are NaN"),
    (np.full((16, 16), 3.0, np.float32), "constant image"),
    (np.ones((1, 1), np.float32), "1x1 pixels is too small"),
    (np.arange(20, dtype=np.float32).reshape(1, 20), "20x1 pixels is too small"),
])
def test_unusable_images_are_rejected(data, reason):
    with pytest.raises(InputRejected, match=reason):
        scale_and_stretch(data, PreprocessConfig())


def test_constant_with_nan_is_still_constant():
    img = np.full((16, 16), 2.0, np.float32)
    img[0] = np.nan
    with pytest.raises(InputRejected, match="every unmasked pixel is 2"):
        scale_and_stretch(img, PreprocessConfig())


def test_resample_keeps_aspect_ratio_and_pads():
    wide = np.ones((50, 200), np.float32)
    out = resample_square(wide, 64)
    assert out.shape == (64, 64)
    rows = np.flatnonzero(out.max(axis=1) > 0.5)
    assert len(rows) == 16 and rows[0] == 24  # 200x50 -> 64x16, centred
    assert np.all(out[:24] == 0) and np.all(out[40:] == 0)
    tall = resample_square(np.ones((10, 5), np.float32), 64)  # upsampling
    cols = np.flatnonzero(tall.max(axis=0) > 0.5)
    assert len(cols) == 32 and cols[0] == 16


def test_preprocess_output_types():
    rng = np.random.default_rng(3)
    pixels, preview = preprocess(rng.normal(size=(300, 600)).astype(np.float32),
                                 PreprocessConfig(size=32, preview_size=128))
    assert pixels.shape == (32, 32) and pixels.dtype == np.float16
    assert 0 <= pixels.min() and pixels.max() <= 1
    assert preview.shape == (64, 128) and preview.dtype == np.uint8


def test_config_is_validated():
    with pytest.raises(ValueError, match="clip"):
        PreprocessConfig(clip=(99, 1))
    with pytest.raises(ValueError, match="stretch"):
        PreprocessConfig(stretch="sqrt")
