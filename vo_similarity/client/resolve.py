"""Target names to positions: the service's own target names first, then Sesame.

The machines this runs on may be offline, and an archive's own target names
(``M 1``, ``Barnard's Loop``) are what its users type; so a name is first
matched against ``similarity.images.target_name`` ignoring case and spaces
(``m1`` finds ``M 1``), and only then handed to astropy's
:meth:`~astropy.coordinates.SkyCoord.from_name` (CDS Sesame).
"""

from __future__ import annotations

import logging

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.coordinates.name_resolve import NameResolveError
from astroquery.exceptions import InvalidQueryError

__all__ = ["normalise_name", "pick_target", "resolve_elsewhere"]

log = logging.getLogger(__name__)


def normalise_name(name: str) -> str:
    """Lower case without white space: the form in which names are compared."""
    return "".join(name.lower().split())


def pick_target(name: str, candidates) -> tuple[float, float] | None:
    """The position of the first candidate row whose ``target_name`` matches ``name``.

    Args:
        name: what the user typed.
        candidates: rows with ``target_name``, ``s_ra``, ``s_dec`` (the
            answer of :func:`vo_similarity.client.adql.target_lookup_query`).
    """
    wanted = normalise_name(name)
    for row in candidates:
        target = row["target_name"]
        if target is np.ma.masked or row["s_ra"] is np.ma.masked or row["s_dec"] is np.ma.masked:
            continue
        if normalise_name(str(target)) == wanted:
            return float(row["s_ra"]), float(row["s_dec"])
    return None


def resolve_elsewhere(name: str) -> tuple[float, float]:
    """The ICRS position of ``name`` from Sesame (needs the internet).

    Raises:
        InvalidQueryError: Sesame does not know the name or cannot be reached.
    """
    try:
        c = SkyCoord.from_name(name, frame="icrs")
    except (NameResolveError, OSError) as exc:
        raise InvalidQueryError(
            f"{name!r} is not a target name of this service, and Sesame could not resolve "
            f"it ({exc}); give a position to query_region instead") from None
    log.info("resolved %r through Sesame: %s", name, c.to_string())
    return float(c.ra.deg), float(c.dec.deg)
