"""What a reader returns: one 2-D image in display orientation plus header facts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HeaderFacts", "InputRejected", "RawImage"]


class InputRejected(Exception):
    """An input that cannot become an image; the message is the report's reason.

    The ingest run catches it, writes one report line ``<path>\\t<reason>`` and
    goes on with the next input.
    """


@dataclass(frozen=True)
class HeaderFacts:
    """Metadata a file states about itself (FITS header; nothing for PNG/JPEG).

    Unknown floats are NaN, unknown strings empty. Angles are in degrees.

    Attributes:
        s_ra, s_dec: ICRS centre of the image.
        s_fov: diameter of the field of view (the image diagonal).
        target_name: the ``OBJECT`` keyword.
        label: the ``LABEL`` keyword (ground truth of synthetic images).
        category: the ``CATEGORY`` keyword, if any.
        bunit: the ``BUNIT`` keyword (brightness unit).
        beam_major, beam_minor, beam_pa: restoring beam ``BMAJ``/``BMIN``/``BPA``.
        peak_channels: spectral channels (first, last) the peak-flux image was
            taken over, for cubes; ``None`` for 2-D images.
    """

    s_ra: float = math.nan
    s_dec: float = math.nan
    s_fov: float = math.nan
    target_name: str = ""
    label: str = ""
    category: str = ""
    bunit: str = ""
    beam_major: float = math.nan
    beam_minor: float = math.nan
    beam_pa: float = math.nan
    peak_channels: tuple[int, int] | None = None


@dataclass(frozen=True)
class RawImage:
    """One image as read from a file, before any scaling.

    Attributes:
        data: float32 ``(height, width)``, row 0 at the top (north up for FITS
            images with a standard WCS); masked or blank pixels are NaN.
        facts: what the file's header says about the image.
    """

    data: np.ndarray
    facts: HeaderFacts = field(default_factory=HeaderFacts)
