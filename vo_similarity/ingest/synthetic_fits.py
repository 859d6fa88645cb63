"""FITS headers and streamed writing for the synthetic ALMA-like sky.

Headers follow what ALMA archive products carry: a celestial ``RA---SIN`` /
``DEC--SIN`` WCS (Calabretta & Greisen 2002, A&A 395 1077), ``BMAJ``/``BMIN``/
``BPA`` in degrees, ``BUNIT = 'Jy/beam'``, and for cubes a ``FREQ`` axis in Hz
with ``RESTFRQ`` and ``SPECSYS`` (Greisen et al. 2006, A&A 446 747) and an
optional degenerate ``STOKES`` axis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from vo_similarity.workdir import atomic_write

__all__ = ["SkyPlacement", "Spectral", "make_header", "write_cube"]

#: Rest frequencies [Hz] of lines ALMA observes most (CDMS / Splatalogue values).
LINES: dict[str, float] = {
    "CO(1-0)": 115.2712018e9,
    "CO(2-1)": 230.538e9,
    "CO(3-2)": 345.7959899e9,
    "13CO(2-1)": 220.3986842e9,
    "C18O(2-1)": 219.5603541e9,
    "HCO+(4-3)": 356.7342230e9,
}
_C_KMS = 299792.458


@dataclass(frozen=True)
class SkyPlacement:
    """Where an image lies on the sky.

    Attributes:
        ra, dec: ICRS coordinates of the image centre [deg].
        cell: pixel size [deg].
    """

    ra: float
    dec: float
    cell: float

    @classmethod
    def draw(cls, rng: np.random.Generator, beam_px: float) -> SkyPlacement:
        """A random position visible from ALMA (Dec −90°…+47°, uniform on the sphere).

        The beam is log-uniform in 0.03–2 arcsec, which with ``beam_px`` pixels per
        beam sets the pixel size.
        """
        ra = rng.uniform(0.0, 360.0)
        lo, hi = np.sin(np.radians(-90.0)), np.sin(np.radians(47.0))
        dec = float(np.degrees(np.arcsin(rng.uniform(lo, hi))))
        beam_arcsec = np.exp(rng.uniform(np.log(0.03), np.log(2.0)))
        return cls(ra=float(ra), dec=dec, cell=float(beam_arcsec / 3600.0 / beam_px))


@dataclass(frozen=True)
class Spectral:
    """The frequency axis of a cube.

    Attributes:
        n_channels: number of channels.
        line: name of the line (a key of :data:`LINES`).
        channel_kms: channel width [km/s].
        stokes: whether a degenerate STOKES axis follows the FREQ axis.
    """

    n_channels: int
    line: str
    channel_kms: float
    stokes: bool

    @classmethod
    def draw(cls, rng: np.random.Generator, n_channels: int, stokes: bool) -> Spectral:
        line = str(rng.choice(list(LINES)))
        return cls(n_channels, line, float(rng.uniform(0.1, 1.5)), stokes)


def make_header(
    size: int,
    place: SkyPlacement,
    beam: tuple[float, float, float],
    *,
    spectral: Spectral | None = None,
    degenerate: bool = False,
    extra: dict[str, tuple[object, str]] | None = None,
) -> fits.Header:
    """A complete primary header for a ``size``² image or cube.

    Args:
        size: image width and height [px].
        place: sky position and pixel size.
        beam: (BMAJ, BMIN, BPA) with axes in pixels and BPA in degrees.
        spectral: the FREQ (and STOKES) axes of a cube; None for an image.
        degenerate: for an image, add one-pixel FREQ and STOKES axes (4-D), as
            many ALMA continuum products have.
        extra: further keywords, name → (value, comment).
    """
    if spectral is not None:
        naxes = [size, size, spectral.n_channels] + ([1] if spectral.stokes else [])
    else:
        naxes = [size, size] + ([1, 1] if degenerate else [])
    h = fits.Header()
    h["SIMPLE"] = True
    h["BITPIX"] = -32
    h["NAXIS"] = len(naxes)
    for i, n in enumerate(naxes, 1):
        h[f"NAXIS{i}"] = n
    h["EXTEND"] = True
    h["BUNIT"] = ("Jy/beam", "brightness unit")
    h["BTYPE"] = "Intensity"
    bmaj, bmin, bpa = beam
    h["BMAJ"] = (bmaj * place.cell, "[deg] restoring beam major axis FWHM")
    h["BMIN"] = (bmin * place.cell, "[deg] restoring beam minor axis FWHM")
    h["BPA"] = (bpa, "[deg] beam position angle, east of north")
    h["RADESYS"] = "ICRS"
    h["EQUINOX"] = 2000.0
    centre = (size + 1) / 2.0
    h["CTYPE1"], h["CRVAL1"], h["CDELT1"] = "RA---SIN", place.ra, -place.cell
    h["CRPIX1"], h["CUNIT1"] = centre, "deg"
    h["CTYPE2"], h["CRVAL2"], h["CDELT2"] = "DEC--SIN", place.dec, place.cell
    h["CRPIX2"], h["CUNIT2"] = centre, "deg"
    if spectral is not None or degenerate:
        if spectral is not None:
            rest = LINES[spectral.line]
            dnu = rest * spectral.channel_kms / _C_KMS
            n = spectral.n_channels
            h["CTYPE3"], h["CRVAL3"], h["CDELT3"] = "FREQ", rest - (n - 1) / 2 * dnu, dnu
            h["RESTFRQ"] = (rest, f"[Hz] {spectral.line}")
        else:
            h["CTYPE3"], h["CRVAL3"], h["CDELT3"] = "FREQ", 230.0e9, 7.5e9
        h["CRPIX3"], h["CUNIT3"] = 1.0, "Hz"
        h["SPECSYS"] = "LSRK"
        if len(naxes) == 4:
            h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    for key, (value, comment) in (extra or {}).items():
        h[key] = (value, comment)
    return h


def write_cube(path: Path, planes: Iterable[np.ndarray], header: fits.Header) -> Path:
    """Write an image or cube plane by plane, so that memory stays one plane.

    ``header`` describes the whole array (``NAXIS1`` × ``NAXIS2`` × ...), as
    :func:`make_header` builds it; ``planes`` yields the ``NAXIS2`` × ``NAXIS1``
    planes in file order (all channels of the first Stokes plane, ...). Data are
    written as big-endian float32. The file appears under ``path`` only when
    complete, so a killed writer leaves no truncated file behind.

    Args:
        path: the FITS file to write (replaced if it exists).
        planes: 2-D arrays, as many as the product of the axes beyond the second.
        header: the primary header, ``BITPIX = -32``.

    Returns:
        ``path``.

    Raises:
        ValueError: if a plane has the wrong shape or the number of planes differs
            from what the header announces.
    """
    if header.get("BITPIX") != -32:
        raise ValueError(f"write_cube writes float32 data: BITPIX is {header.get('BITPIX')}")
    naxis = int(header["NAXIS"])
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    expected = int(np.prod([int(header[f"NAXIS{i}"]) for i in range(3, naxis + 1)], dtype=int))
    written = 0
    with atomic_write(Path(path)) as tmp:
        hdu = fits.StreamingHDU(tmp, header)
        try:
            for plane in planes:
                plane = np.asarray(plane)
                if plane.shape != shape:
                    raise ValueError(
                        f"plane {written} has shape {plane.shape}, header says {shape}"
                    )
                if written >= expected:
                    raise ValueError(f"more than the {expected} planes the header announces")
                hdu.write(plane.astype(">f4", copy=False))
                written += 1
        finally:
            hdu.close()
        if written != expected:
            raise ValueError(f"got {written} planes, the header announces {expected}")
    return Path(path)
