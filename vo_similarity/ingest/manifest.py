"""Write and read the manifest (``manifest.ecsv``) with the typed columns of the contract.

ECSV reads an empty string back as a *masked* value; :func:`read_manifest`
undoes that, so that unknown strings are ``""`` and unknown floats NaN, as
:data:`vo_similarity.workdir.MANIFEST_COLUMNS` promises.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vo_similarity.workdir import MANIFEST_COLUMNS, atomic_write

__all__ = ["FLOAT_COLUMNS", "read_manifest", "read_manifest_meta", "write_manifest"]

#: Columns holding angles in degrees; all other columns but ``image_id`` are strings.
FLOAT_COLUMNS = ("s_ra", "s_dec", "s_fov")


def _dtype(name: str) -> type:
    if name == "image_id":
        return np.int64
    return np.float64 if name in FLOAT_COLUMNS else str


def write_manifest(path: Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]):
    """Write ``rows`` (dicts with every manifest column) to ``path`` atomically.

    Args:
        path: the manifest file.
        rows: one dict per image, in ``image_id`` order.
        meta: table metadata (written in the ECSV header).
    """
    from astropy.table import Table

    names = list(MANIFEST_COLUMNS)
    table = Table(rows=[[r[c] for c in names] for r in rows] or None, names=names,
                  dtype=[_dtype(c) for c in names])
    for name, description in MANIFEST_COLUMNS.items():
        table[name].description = description
    for name in FLOAT_COLUMNS:
        table[name].unit = "deg"
    table.meta.update(meta)
    with atomic_write(Path(path)) as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)


def read_manifest(path: str | os.PathLike[str]):
    """Read the manifest as an astropy Table, sorted by ``image_id``, nothing masked."""
    from astropy.table import MaskedColumn, Table

    table = Table.read(path, format="ascii.ecsv")
    for name in table.colnames:
        column = table[name]
        if isinstance(column, MaskedColumn):
            fill = np.nan if name in FLOAT_COLUMNS else ""
            table[name] = column.filled(fill)
        if name not in FLOAT_COLUMNS and name != "image_id" and table[name].dtype.kind != "U":
            table[name] = table[name].astype(str)
    table.sort("image_id")
    return table


def read_manifest_meta(path: str | os.PathLike[str]) -> dict:
    """The manifest's table metadata, read from its ECSV header only.

    Reading a whole manifest of 10⁶ rows takes seconds; checks that only need
    the metadata (e.g. ``pixels_sha256``) read the YAML header lines instead.
    """
    from astropy.io.misc import yaml

    lines = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line[2:] if line.startswith("# ") else line[1:])
    if not lines or not lines[0].startswith("%ECSV"):
        raise ValueError(f"{path} is not an ECSV file")
    header = yaml.load("".join(lines[1:])) or {}
    return dict(header.get("meta") or {})
