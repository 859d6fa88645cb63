"""PNG and JPEG through Pillow; recognising files by content."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from ingest_helpers import gaussian_image, write_fits
from PIL import Image
from real_components import need

from vo_similarity.ingest.raw_image import InputRejected
from vo_similarity.ingest.readers import read_image, sniff_format

STELLARIUM = "/usr/share/stellarium/nebulae/default"


def test_rgb_png_is_luminance(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luminance 0.299 * 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    raw = read_image(tmp_path / "red.png")
    assert raw.data.shape == (20, 30) and raw.data.dtype == np.float32
    assert raw.data[0, 0] == pytest.approx(76, abs=1)


def test_transparent_pixels_are_masked(tmp_path):
    rgba = np.full((16, 16, 4), 200, np.uint8)
    rgba[:4, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    raw = read_image(tmp_path / "a.png")
    assert np.isnan(raw.data[:4]).all() and np.isfinite(raw.data[4:]).all()


def test_16_bit_png_keeps_range(tmp_path):
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 10
    Image.fromarray(data).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png").data, data.astype(np.float32))


def test_jpeg(tmp_path):
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))).save(tmp_path / "g.jpg")
    raw = read_image(tmp_path / "g.jpg")
    assert raw.data.shape == (32, 64) and raw.data[:, -1].mean() > raw.data[:, 0].mean() + 200


def test_real_stellarium_palette_png():
    from pathlib import Path

    path = Path(STELLARIUM) / "m2.png"
    if not path.is_file():
        need("Debian package stellarium-data (apt-get install stellarium-data)")
    raw = read_image(path)
    assert raw.data.ndim == 2 and np.nanmax(raw.data) > np.nanmin(raw.data)


def test_sniffing(tmp_path):
    fits_path = write_fits(tmp_path / "image.dat", gaussian_image())
    gz = tmp_path / "image.fits.gz"
    gz.write_bytes(gzip.compress(fits_path.read_bytes()))
    (tmp_path / "notes.txt").write_text("SIMPLE is not FITS\n")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.jpeg")
    assert sniff_format(fits_path) == "fits"
    assert sniff_format(gz) == "fits"
    assert sniff_format(tmp_path / "x.jpeg") == "jpeg"
    assert sniff_format(tmp_path / "notes.txt") is None
    np.testing.assert_array_equal(read_image(gz).data, read_image(fits_path).data)
    with pytest.raises(InputRejected, match="not an image"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(InputRejected, match="no such file"):
        read_image(tmp_path / "missing.fits")
