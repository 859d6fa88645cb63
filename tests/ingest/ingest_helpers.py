"""FITS writers shared by the ingest tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits


def write_fits(path: Path, data: np.ndarray, **cards) -> Path:
    """Write ``data`` as the primary HDU of ``path`` with extra header ``cards``."""
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path, overwrite=True)
    return path


def celestial_cards(ra: float = 150.0, dec: float = 2.0, cdelt: float = 1e-4) -> dict:
    """A TAN WCS for the first two axes, centred on pixel 32.5."""
    return {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
            "CDELT1": -cdelt, "CDELT2": cdelt, "CRPIX1": 32.5, "CRPIX2": 32.5,
            "RADESYS": "ICRS"}


def gaussian_image(n: int = 64, seed: int = 0) -> np.ndarray:
    """A Gaussian blob on noise with a NaN border outside radius n/2 (a primary-beam cut)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    img = np.exp(-(x**2 + y**2) / (2 * (n / 8) ** 2)) + 0.01 * rng.standard_normal((n, n))
    img[np.hypot(x, y) > n / 2] = np.nan
    return img.astype(np.float32)
