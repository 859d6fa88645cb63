"""What every image source hands to the ingest pipeline."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_AUTHORITY", "ImageInput"]

#: IVOA authority of the publisher DIDs unless one is given (``--authority``).
DEFAULT_AUTHORITY = "vo-similarity.example"


@dataclass(frozen=True)
class ImageInput:
    """One image to ingest, with whatever metadata its source knows.

    Sources (a folder of files, the built-in Stellarium sample, the synthetic
    sky, an ObsCore query) produce these; the pipeline reads ``path``, fills
    gaps from the file's own header (FITS WCS, OBJECT, ...) and writes one
    manifest row (see :data:`vo_similarity.workdir.MANIFEST_COLUMNS`).

    Attributes:
        path: the file to read (FITS, PNG or JPEG).
        obs_id: identifier inside the collection; unique and stable across
            reruns (the pipeline derives the publisher DID from it).
        target_name: the astronomical object, or "" when unknown.
        s_ra, s_dec: ICRS centre in degrees, NaN when unknown.
        s_fov: field-of-view diameter in degrees, NaN when unknown.
        category: science category, or "" when unknown.
        credit: who made the image, or "".
        label: ground-truth class where known, else "".
        publisher_did: the archive's own ``obs_publisher_did`` (an ObsCore
            source), or "" to derive ``ivo://<authority>/~?<obs_id>``.
    """

    path: Path
    obs_id: str
    target_name: str = ""
    s_ra: float = math.nan
    s_dec: float = math.nan
    s_fov: float = math.nan
    category: str = ""
    credit: str = ""
    label: str = ""
    publisher_did: str = ""
