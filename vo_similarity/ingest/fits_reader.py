"""Read a FITS image or cube as one 2-D image, with memory bounded for large cubes.

* A 2-D image is read as it is (the first image HDU that has data; table HDUs
  are skipped).
* A 3-D cube, or a 4-D cube with a Stokes axis, becomes its *peak-flux image*:
  the NaN-aware maximum over the spectral axis (optionally over a channel range),
  taken from the first Stokes plane. The spectral axis is recognised from its
  WCS ``CTYPEn`` (FITS WCS Paper III, Greisen et al. 2006, A&A 446, 747, plus the
  AIPS conventions ``FELO``/``VELO``). Blank pixels (NaN, or ``BLANK`` in integer
  images), e.g. the border outside an interferometer's primary beam, stay NaN
  unless some channel has a value there.
* Cubes are read a block of channels at a time through astropy's lazy
  :attr:`~astropy.io.fits.ImageHDU.section`, so peak memory is a few planes, not
  the whole cube. The file is opened without memory mapping: ``section`` reads
  only the bytes asked for anyway, and astropy refuses to memory-map scaled
  (``BSCALE``/``BZERO``/``BLANK``) data.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from vo_similarity.ingest.raw_image import HeaderFacts, InputRejected, RawImage

__all__ = ["CHUNK_BYTES", "read_fits", "spectral_kind"]

log = logging.getLogger(__name__)

#: Bytes of float32 data read per block of channels.
CHUNK_BYTES = 64 * 2**20

# Spectral CTYPE prefixes: FITS WCS Paper III (Table 1) and the AIPS forms.
_SPECTRAL = ("FREQ", "ENER", "WAVN", "VRAD", "WAVE", "VOPT", "ZOPT", "AWAV", "VELO",
             "BETA", "FELO")


def spectral_kind(ctype: str) -> str:
    """Classify a ``CTYPEn`` value as ``"spectral"``, ``"stokes"`` or ``"other"``."""
    c = ctype.strip().upper()
    if c.startswith("STOKES"):
        return "stokes"
    if c[:4] in _SPECTRAL:
        return "spectral"
    return "other"


def read_fits(path: Path, channels: tuple[int | None, int | None] | None = None) -> RawImage:
    """Read ``path`` as one 2-D image (a cube becomes its peak-flux image).

    Args:
        path: an uncompressed or gzip-compressed FITS file.
        channels: ``(start, stop)`` channel range of cubes, 0-based, ``stop``
            excluded, either end ``None`` for open; ``None`` for all channels.

    Returns:
        The image, row 0 at the top, blank pixels NaN, and its header facts.

    Raises:
        InputRejected: with a one-line reason when the file is not a usable image.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError...
        raise InputRejected(f"unreadable FITS file: {_one_line(exc)}") from exc
    with hdul:
        hdu = _first_image_hdu(hdul)
        _check_complete(path, hdu)
        header = hdu.header
        shape = tuple(int(n) for n in hdu.shape)  # numpy order
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if len(shape) == 2:
                    data, chans = np.asarray(hdu.section[...], dtype=np.float32), None
                    image_axes = [0, 1]
                else:
                    data, chans, image_axes = _peak_flux(hdu, header, shape, channels)
        except InputRejected:
            raise
        except Exception as exc:
            raise InputRejected(f"cannot read the image data: {_one_line(exc)}") from exc
        facts = _header_facts(header, image_axes, data.shape, chans)
    # FITS rows run from the bottom (south for a standard WCS) upwards.
    return RawImage(np.ascontiguousarray(data[::-1]), facts)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _first_image_hdu(hdul: fits.HDUList):
    kinds = []
    for hdu in hdul:
        naxis = int(hdu.header.get("NAXIS", 0))
        if hdu.is_image and naxis > 0 and all(
            int(hdu.header.get(f"NAXIS{i}", 0)) > 0 for i in range(1, naxis + 1)
        ):
            return hdu
        if not hdu.is_image:
            kinds.append(f"{type(hdu).__name__} {hdu.name!r}")
    if kinds:
        raise InputRejected(f"no image HDU, only table HDUs: {', '.join(kinds)}")
    raise InputRejected("no image data in any HDU")


def _check_complete(path: Path, hdu) -> None:
    """Reject a file shorter than its header promises (a truncated download)."""
    if isinstance(hdu, fits.CompImageHDU):
        return
    info = hdu.fileinfo()
    if info is None or getattr(info["file"], "compression", None):
        return
    nbytes = abs(int(hdu.header["BITPIX"])) // 8 * math.prod(hdu.shape)
    have = os.path.getsize(path) - int(info["datLoc"])
    if have < nbytes:
        raise InputRejected(
            f"truncated FITS file: the header announces {nbytes} data bytes, "
            f"the file holds {max(have, 0)}"
        )


def _peak_flux(hdu, header: fits.Header, shape: tuple[int, ...],
               channels: tuple[int | None, int | None] | None
               ) -> tuple[np.ndarray, tuple[int, int], list[int]]:
    """NaN-aware maximum over the spectral axis, read a block of channels at a time.

    Returns the peak image, the channels it covers (first, last) and the two
    FITS axes (0-based) of the image.
    """
    naxis = len(shape)
    # FITS axis i (0-based) is numpy axis naxis-1-i.
    ctypes = [str(header.get(f"CTYPE{i + 1}", "")) for i in range(naxis)]
    kinds = [spectral_kind(c) for c in ctypes]
    image_axes = [i for i, k in enumerate(kinds) if k == "other"][:2]
    spectral = [i for i, k in enumerate(kinds) if k == "spectral"]
    if len(image_axes) < 2:
        raise InputRejected(f"fewer than two image axes among CTYPEs {ctypes}")
    if len(spectral) != 1:
        extra = [i for i in range(naxis) if i not in image_axes and kinds[i] != "stokes"]
        if not spectral and all(shape[naxis - 1 - i] == 1 for i in extra):
            spectral = []  # degenerate extra axes only: a 2-D image in disguise
        else:
            described = ", ".join(
                f"axis {i + 1} CTYPE{i + 1}={ctypes[i]!r} length {shape[naxis - 1 - i]}"
                for i in extra
            )
            raise InputRejected(f"cube without a recognisable spectral axis ({described})")
    key: list[object] = [0] * naxis
    for i in image_axes:
        key[naxis - 1 - i] = slice(None)
    for i in range(naxis):
        if i not in image_axes and kinds[i] not in ("spectral", "stokes") \
                and shape[naxis - 1 - i] != 1:
            raise InputRejected(
                f"axis {i + 1} (CTYPE{i + 1}={ctypes[i]!r}, length "
                f"{shape[naxis - 1 - i]}) is neither spectral, Stokes nor degenerate"
            )
    if not spectral:
        plane = np.asarray(hdu.section[tuple(key)], dtype=np.float32)
        return plane, (0, 0), image_axes

    s = naxis - 1 - spectral[0]
    nchan = shape[s]
    start, stop, _ = slice(*(channels or (None, None))).indices(nchan)
    if stop <= start:
        raise InputRejected(f"channel range {channels} selects none of the {nchan} channels")
    plane_bytes = 4 * shape[naxis - 1 - image_axes[0]] * shape[naxis - 1 - image_axes[1]]
    block = max(1, CHUNK_BYTES // plane_bytes)
    # position of the spectral axis among the sliced axes of the result
    out_axis = sum(1 for j in range(s) if isinstance(key[j], slice))
    peak: np.ndarray | None = None
    for first in range(start, stop, block):
        key[s] = slice(first, min(first + block, stop))
        chunk = np.asarray(hdu.section[tuple(key)], dtype=np.float32)
        chunk_peak = np.fmax.reduce(chunk, axis=out_axis)
        peak = chunk_peak if peak is None else np.fmax(peak, chunk_peak)
        del chunk
    log.debug("%s: peak flux over channels %d..%d of %d", hdu.name, start, stop - 1, nchan)
    return peak, (start, stop - 1), image_axes


def _header_facts(header: fits.Header, image_axes: list[int], shape: tuple[int, int],
                  chans: tuple[int, int] | None) -> HeaderFacts:
    ra, dec, fov = _centre_and_fov(header, image_axes, shape)

    def text(key: str) -> str:
        value = header.get(key, "")
        return str(value).strip() if value is not None else ""

    def number(key: str) -> float:
        try:
            return float(header.get(key, math.nan))
        except (TypeError, ValueError):
            return math.nan

    return HeaderFacts(
        s_ra=ra, s_dec=dec, s_fov=fov,
        target_name=text("OBJECT"), label=text("LABEL"), category=text("CATEGORY"),
        bunit=text("BUNIT"),
        beam_major=number("BMAJ"), beam_minor=number("BMIN"), beam_pa=number("BPA"),
        peak_channels=chans,
    )


def _centre_and_fov(header: fits.Header, image_axes: list[int], shape: tuple[int, int]
                    ) -> tuple[float, float, float]:
    """ICRS centre and diagonal of the image from its celestial WCS, NaN if none.

    Only the two image axes enter the WCS, so that a spectral axis wcslib does
    not know (e.g. AIPS ``FELO-HEL``) costs nothing.
    """
    from astropy.wcs import WCS
    from astropy.wcs.utils import pixel_to_skycoord

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header, naxis=[i + 1 for i in image_axes]).celestial
            if not wcs.has_celestial:
                return math.nan, math.nan, math.nan
            ny, nx = shape
            xs = np.array([(nx - 1) / 2, -0.5, nx - 0.5, nx - 0.5, -0.5])
            ys = np.array([(ny - 1) / 2, -0.5, ny - 0.5, -0.5, ny - 0.5])
            sky = pixel_to_skycoord(xs, ys, wcs).icrs
            fov = max(sky[1].separation(sky[2]).deg, sky[3].separation(sky[4]).deg)
            ra, dec = float(sky[0].ra.deg), float(sky[0].dec.deg)
    except Exception as exc:  # noqa: BLE001 -- a broken WCS is a missing fact, not a bad image
        log.debug("no usable celestial WCS: %s", exc)
        return math.nan, math.nan, math.nan
    values = (ra, dec, float(fov))
    return values if all(np.isfinite(values)) else (math.nan, math.nan, math.nan)
