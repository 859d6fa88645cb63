"""A first look at an image given to ``query_image``, before anything is fetched or sent.

It catches what needs no model: a missing or unreadable file, a file that is
not FITS, PNG or JPEG (recognised by its first bytes, as ingest does), an
array that is not an image.  The full reading and preprocessing is the light
runtime's (:mod:`vo_similarity.client.embedding`), which refuses what slips
through (e.g. a truncated PNG) with the same error type.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astroquery.exceptions import InvalidQueryError

from vo_similarity.ingest.readers import sniff_format

__all__ = ["check_image"]


def check_image(image: object) -> Path | np.ndarray:
    """The image as a readable file's path or as an array; else InvalidQueryError."""
    if isinstance(image, str | os.PathLike):
        path = Path(image).expanduser()
        if not path.exists():
            raise InvalidQueryError(f"no such file: {path}")
        if not path.is_file():
            raise InvalidQueryError(f"{path} is not a file")
        try:
            kind = sniff_format(path)
        except OSError as exc:
            raise InvalidQueryError(f"cannot read {path}: {exc.strerror or exc}") from None
        if kind is None:
            raise InvalidQueryError(f"{path} is not a FITS, PNG or JPEG file (judged by its "
                                    "first bytes)")
        return path
    if isinstance(image, np.ndarray | list | tuple):
        a = np.asarray(image)
        if a.dtype.kind not in "biuf":
            raise InvalidQueryError(f"an image array must hold numbers, got dtype {a.dtype}")
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or min(a.shape) < 1:
            raise InvalidQueryError(f"an image array must be 2-D (or H x W x 3), got shape "
                                    f"{a.shape}")
        if not np.isfinite(a).any():
            raise InvalidQueryError("the image array has no finite pixel")
        return a
    raise InvalidQueryError(f"image must be a file path or a numpy array, got "
                            f"{type(image).__name__}")
