"""Checks of the client's input, made before anything is sent.

Each function returns the value in the form the queries use, or raises
:class:`~astroquery.exceptions.InvalidQueryError` with a message that says
what was wrong and what is expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from urllib.parse import urlparse

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astroquery.exceptions import InvalidQueryError

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_N",
    "check_coordinates",
    "check_id",
    "check_ids",
    "check_n",
    "check_radius",
    "check_url",
    "check_vector",
]

#: Most results per query: the neighbours published per image (k <= 1000)
#: and the search service's limit.
MAX_N = 1000
#: Longest accepted image id; DIDs and obs_ids are far shorter.
MAX_ID_LENGTH = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_n(n: object, *, name: str = "n", low: int = 1, high: int = MAX_N) -> int:
    """An integer in ``low..high`` (bools and floats are refused)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise InvalidQueryError(f"{name} must be an integer from {low} to {high}, got {n!r}")
    if not low <= int(n) <= high:
        raise InvalidQueryError(f"{name} must be from {low} to {high}, got {int(n)}")
    return int(n)


def check_id(image_id: object, *, name: str = "did") -> str:
    """An image id: a non-empty string (``obs_publisher_did`` or ``obs_id``).

    Quotes and markup are legal in ids and are escaped by the query builders;
    control characters and blank or overlong strings cannot be ids at all.
    """
    if not isinstance(image_id, str):
        raise InvalidQueryError(f"{name} must be a string (an obs_publisher_did or an "
                                f"obs_id), got {type(image_id).__name__} {image_id!r}")
    if not image_id.strip():
        raise InvalidQueryError(f"{name} is empty; give an obs_publisher_did or an obs_id")
    if len(image_id) > MAX_ID_LENGTH or _CONTROL.search(image_id):
        raise InvalidQueryError(f"{name} {image_id[:80]!r} is not an image id (longer than "
                                f"{MAX_ID_LENGTH} characters or with control characters)")
    return image_id


def check_ids(ids: str | Iterable[str], *, name: str, allow_empty: bool) -> list[str]:
    """A list of image ids; a single string counts as a list of one."""
    if isinstance(ids, str):
        ids = [ids]
    try:
        listed = list(ids)
    except TypeError:
        raise InvalidQueryError(f"{name} must be an id or a list of ids, got {ids!r}") from None
    if not listed and not allow_empty:
        raise InvalidQueryError(f"{name} is empty; give at least one image id")
    if len(listed) > MAX_N:
        raise InvalidQueryError(f"{name} has {len(listed)} ids; at most {MAX_N} are accepted")
    return [check_id(i, name=f"{name}[{k}]") for k, i in enumerate(listed)]


def check_radius(radius: object, *, name: str = "radius", allow_zero: bool = False) -> float:
    """An angle Quantity (e.g. ``2 * u.arcmin``) up to 180 degrees; returns degrees."""
    if not isinstance(radius, u.Quantity) or radius.unit.physical_type != "angle":
        raise InvalidQueryError(f"{name} must be an angle with its unit, e.g. 2 * u.arcmin "
                                f"(astropy.units), got {radius!r}")
    if not radius.isscalar:
        raise InvalidQueryError(f"{name} must be one angle, got {radius!r}")
    deg = float(radius.to_value(u.deg))
    if not math.isfinite(deg) or deg < 0 or (deg == 0 and not allow_zero) or deg > 180:
        raise InvalidQueryError(f"{name} must be {'at least 0' if allow_zero else 'above 0'} "
                                f"and at most 180 deg, got {radius}")
    return deg


def check_coordinates(coordinates: object) -> tuple[float, float]:
    """ICRS (ra, dec) in degrees from a SkyCoord or a string such as ``"83.63 22.01"``.

    Strings are parsed as positions only (degrees, or sexagesimal with units);
    names are :meth:`SimilarityClass.query_object`'s business.
    """
    if isinstance(coordinates, str):
        try:
            coordinates = SkyCoord(coordinates, unit=(u.deg, u.deg), frame="icrs")
        except (ValueError, TypeError) as exc:
            raise InvalidQueryError(
                f"cannot read {coordinates!r} as a position ({exc}); give a SkyCoord or "
                "'ra dec' in degrees, or use query_object for a name") from None
    if not isinstance(coordinates, SkyCoord):
        raise InvalidQueryError(f"coordinates must be a SkyCoord or a string 'ra dec', got "
                                f"{coordinates!r}")
    if not coordinates.isscalar:
        raise InvalidQueryError("coordinates must be one position, not an array")
    icrs = coordinates.icrs
    ra, dec = float(icrs.ra.deg), float(icrs.dec.deg)
    if not (math.isfinite(ra) and math.isfinite(dec)):
        raise InvalidQueryError(f"coordinates are not finite: {coordinates}")
    return ra, dec


def check_vector(vector: object, dim: int) -> np.ndarray:
    """A finite, non-zero float vector of length ``dim`` (as float64)."""
    try:
        v = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidQueryError(f"vector must be {dim} numbers, got {vector!r:.80}") from None
    if v.ndim != 1 or v.shape[0] != dim:
        raise InvalidQueryError(f"vector must have {dim} numbers (the model's dimension), "
                                f"got shape {v.shape}")
    if not np.isfinite(v).all():
        bad = np.flatnonzero(~np.isfinite(v))
        raise InvalidQueryError(f"vector has {len(bad)} non-finite values (NaN or inf), "
                                f"first at index {bad[0]}")
    if not np.any(v):
        raise InvalidQueryError("vector is all zeros: it has no direction to search along")
    return v


def check_url(url: object, *, name: str) -> str:
    """An absolute http(s) URL."""
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidQueryError(f"{name} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")
