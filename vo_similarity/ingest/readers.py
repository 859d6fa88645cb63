"""Recognise a file by its content and read it as one 2-D image.

FITS files (plain or gzip-compressed) go to :func:`~vo_similarity.ingest.fits_reader.read_fits`;
PNG and JPEG files are read with Pillow as grayscale luminance (ITU-R BT.601
weights, Pillow's ``"L"`` conversion), fully transparent pixels masked.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np

from vo_similarity.ingest.fits_reader import read_fits
from vo_similarity.ingest.raw_image import InputRejected, RawImage

__all__ = ["read_image", "read_raster", "sniff_format"]

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_GZIP = b"\x1f\x8b"
_FITS = b"SIMPLE  ="


def sniff_format(path: Path) -> str | None:
    """``"fits"``, ``"png"``, ``"jpeg"`` from the file's first bytes, else ``None``."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_GZIP):
        try:
            with gzip.open(path, "rb") as g:
                head = g.read(16)
        except (OSError, EOFError):
            return None
    if head.startswith(_FITS):
        return "fits"
    if head.startswith(_PNG):
        return "png"
    if head.startswith(_JPEG):
        return "jpeg"
    return None


def read_image(path: Path, channels: tuple[int | None, int | None] | None = None) -> RawImage:
    """Read any supported file as one 2-D image.

    Args:
        path: a FITS, PNG or JPEG file.
        channels: channel range for FITS cubes, see :func:`read_fits`.

    Raises:
        InputRejected: the file is missing, of an unknown kind, or unusable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputRejected("no such file")
    kind = sniff_format(path)
    if kind == "fits":
        return read_fits(path, channels)
    if kind in ("png", "jpeg"):
        return read_raster(path)
    raise InputRejected("not an image: neither FITS, PNG nor JPEG content")


def read_raster(path: Path) -> RawImage:
    """Read a PNG or JPEG file as float32 luminance in [0, 255], row 0 at the top.

    16-bit grayscale PNGs keep their full range. Pixels with alpha 0 are NaN.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    data = np.asarray(im, dtype=np.float32)
                    alpha = None
                elif "A" in im.mode or "transparency" in im.info:
                    la = np.asarray(im.convert("LA"))
                    data, alpha = la[..., 0].astype(np.float32), la[..., 1]
                else:
                    data, alpha = np.asarray(im.convert("L"), dtype=np.float32), None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputRejected(f"unreadable {path.suffix or 'image'} file: {exc}") from exc
    if alpha is not None:
        data[alpha == 0] = np.nan
    return RawImage(np.ascontiguousarray(data))
