"""FITS images and cubes: real files of Debian's ftools-fv and generated cubes."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from ingest_helpers import celestial_cards, gaussian_image, write_fits

from vo_similarity.ingest import fits_reader
from vo_similarity.ingest.fits_reader import read_fits, spectral_kind
from vo_similarity.ingest.raw_image import InputRejected


def test_real_radio_and_optical_images(fv_samples):
    for name in ("ngc1316r.fit", "ngc1316o.fit"):
        raw = read_fits(fv_samples / name)
        direct = fits.getdata(fv_samples / name).astype(np.float32)
        assert raw.data.shape == (300, 440)
        np.testing.assert_array_equal(raw.data, direct[::-1])  # row 0 at the top
        assert raw.facts.target_name == "NGC 1316"
        # B1950 header converted to ICRS: Fornax A is at 03h22m41.7s -37d12m30s (J2000)
        centre = SkyCoord(raw.facts.s_ra, raw.facts.s_dec, unit="deg")
        assert centre.separation(SkyCoord("03h22m41.7s -37d12m30s")).deg < 0.1
        # 440 x 300 pixels of 7 arcsec: a diagonal of about 1.04 deg
        assert raw.facts.s_fov == pytest.approx(np.hypot(440, 300) * 1.944444e-3, rel=0.01)


def test_real_hi_cube_peak_flux_is_nanmax_over_spectral_axis(fv_samples):
    """datacube.fit: 30 channels of the VLA HI cube of NGC 6503 (CTYPE3 = 'FELO-HEL')."""
    path = fv_samples / "datacube.fit"
    cube = fits.getdata(path).astype(np.float32)
    assert cube.shape == (30, 64, 64)
    raw = read_fits(path)
    np.testing.assert_array_equal(raw.data, np.nanmax(cube, axis=0)[::-1])
    assert raw.facts.peak_channels == (0, 29)
    assert raw.facts.target_name == "NGC6503"
    centre = SkyCoord(raw.facts.s_ra, raw.facts.s_dec, unit="deg")
    assert centre.separation(SkyCoord("17h49m26.4s +70d08m40s")).deg < 0.1


def test_real_cube_channel_range_and_small_blocks(fv_samples, monkeypatch):
    path = fv_samples / "datacube.fit"
    cube = fits.getdata(path).astype(np.float32)
    # blocks of 3 planes: the maximum must not depend on how the cube is read
    monkeypatch.setattr(fits_reader, "CHUNK_BYTES", 3 * 64 * 64 * 4)
    raw = read_fits(path, channels=(5, 20))
    np.testing.assert_array_equal(raw.data, np.nanmax(cube[5:20], axis=0)[::-1])
    assert raw.facts.peak_channels == (5, 19)
    with pytest.raises(InputRejected, match="selects none"):
        read_fits(path, channels=(40, 50))


def test_real_table_files_are_rejected(fv_samples):
    for name in ("rate.fit", "asciitab.fit", "rosat.evt"):
        with pytest.raises(InputRejected, match="only table HDUs"):
            read_fits(fv_samples / name)


@pytest.mark.parametrize("order", ["freq-stokes", "stokes-freq"])
def test_4d_cube_takes_first_stokes_plane(tmp_path, order):
    rng = np.random.default_rng(1)
    cube = rng.normal(size=(2, 7, 64, 64)).astype(np.float32)  # (stokes, freq, y, x)
    cube[:, :, :5, :] = np.nan  # a blank border, NaN in every channel
    cube[0, 3, 10, 10] = np.nan  # NaN in one channel only
    cards = celestial_cards()
    if order == "freq-stokes":  # FITS axes RA, DEC, FREQ, STOKES -> numpy (stokes, freq, y, x)
        data, f, s = cube, 3, 4
    else:  # FITS axes RA, DEC, STOKES, FREQ -> numpy (freq, stokes, y, x)
        data, f, s = np.ascontiguousarray(cube.transpose(1, 0, 2, 3)), 4, 3
    cards.update({f"CTYPE{f}": "FREQ", f"CRVAL{f}": 2.3e11, f"CDELT{f}": 1e6,
                  f"CTYPE{s}": "STOKES", f"CRVAL{s}": 1.0, f"CDELT{s}": 1.0,
                  "BMAJ": 2e-4, "BMIN": 1e-4, "BPA": 30.0, "BUNIT": "Jy/beam",
                  "LABEL": "spiral"})
    raw = read_fits(write_fits(tmp_path / "cube.fits", data, **cards))
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="All-NaN"):
        expected = np.nanmax(cube[0], axis=0)[::-1]
    np.testing.assert_array_equal(raw.data, expected)
    assert np.isnan(raw.data[-5:]).all() and np.isfinite(raw.data[:-5]).all()
    assert (raw.facts.beam_major, raw.facts.beam_minor, raw.facts.beam_pa) == (2e-4, 1e-4, 30.0)
    assert raw.facts.bunit == "Jy/beam" and raw.facts.label == "spiral"
    assert raw.facts.s_ra == pytest.approx(150.0, abs=1e-3)


def test_primary_beam_nan_border_stays_nan(tmp_path):
    img = gaussian_image()
    raw = read_fits(write_fits(tmp_path / "pb.fits", img, **celestial_cards()))
    np.testing.assert_array_equal(np.isnan(raw.data), np.isnan(img[::-1]))


def test_integer_blank_becomes_nan(tmp_path):
    data = np.arange(64 * 64, dtype=np.int16).reshape(64, 64)
    data[0, :] = -32768
    raw = read_fits(write_fits(tmp_path / "blank.fits", data, BLANK=-32768))
    assert np.isnan(raw.data[-1]).all() and np.isfinite(raw.data[:-1]).all()


def test_image_in_extension_after_empty_primary(tmp_path):
    img = gaussian_image()
    table = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.zeros(3))])
    fits.HDUList([fits.PrimaryHDU(), table, fits.ImageHDU(img)]).writeto(tmp_path / "x.fits")
    np.testing.assert_array_equal(read_fits(tmp_path / "x.fits").data, img[::-1])


def test_cube_without_spectral_axis_is_rejected(tmp_path):
    cube = np.ones((5, 64, 64), np.float32)
    path = write_fits(tmp_path / "c.fits", cube, CTYPE3="PIXEL")
    with pytest.raises(InputRejected,
                       match="cube without a recognisable spectral axis.*'PIXEL' length 5"):
        read_fits(path)
    # a degenerate third axis of any kind is a 2-D image
    raw = read_fits(write_fits(tmp_path / "d.fits", cube[:1], CTYPE3="PIXEL"))
    assert raw.data.shape == (64, 64)


def test_truncated_file_is_rejected(tmp_path):
    path = write_fits(tmp_path / "t.fits", gaussian_image(128))
    path.write_bytes(path.read_bytes()[:2880 + 10000])
    with pytest.raises(InputRejected, match="truncated FITS file"):
        read_fits(path)
    path.write_bytes(path.read_bytes()[:1000])  # cut inside the header
    with pytest.raises(InputRejected, match="unreadable FITS file"):
        read_fits(path)


@pytest.mark.parametrize("ctype,kind", [("FREQ", "spectral"), ("VRAD", "spectral"),
                                        ("FELO-HEL", "spectral"), ("VELO-LSR", "spectral"),
                                        ("WAVE-F2W", "spectral"), ("STOKES", "stokes"),
                                        ("RA---SIN", "other"), ("", "other")])
def test_spectral_kind(ctype, kind):
    assert spectral_kind(ctype) == kind
