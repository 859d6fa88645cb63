"""Write and read the manifest (``manifest.ecsv``) with the typed columns of the contract.

The file is ECSV 1.0 (astropy's format: a YAML header of column types,
descriptions and table metadata, then space-separated values), so astropy's
``Table.read`` reads it as well. This module streams it with Python's ``csv``
module instead of going through astropy's ASCII reader and writer, because
those hold every string column as a fixed-width numpy unicode array: four
bytes per character of the *longest* value, times the number of rows. One
credit line of 1,229 characters among the built-in sample's made its column
4.9 kB per image, and the reader's peak ~12 kB per image (0.6 GiB for 50,000
images, ~12 GiB for 10⁶), for a file of ~230 bytes per image. Here string
columns are numpy object arrays of Python strings, each distinct value of a
column held once (credits, categories and labels repeat), so memory follows
the data. A manifest with other column types (not written by this module)
is read by astropy, as before.

Unknown strings are ``""`` and unknown floats NaN, as
:data:`vo_similarity.workdir.MANIFEST_COLUMNS` promises (astropy's reader
gives masked values for ECSV's empty fields; both paths undo that).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vo_similarity.workdir import MANIFEST_COLUMNS, atomic_write

__all__ = ["FLOAT_COLUMNS", "read_manifest", "read_manifest_meta", "write_manifest"]

#: Columns holding angles in degrees; all other columns but ``image_id`` are strings.
FLOAT_COLUMNS = ("s_ra", "s_dec", "s_fov")

#: ECSV datatypes this module reads itself, and how each value is parsed.
_PARSERS = {"int64": int, "float64": lambda v: float(v) if v else math.nan, "string": str}
_NUMPY = {"int64": np.int64, "float64": np.float64, "string": object}


def _datatype(name: str) -> str:
    if name == "image_id":
        return "int64"
    return "float64" if name in FLOAT_COLUMNS else "string"


def _header_lines(meta: Mapping[str, Any]) -> list[str]:
    """The ECSV header of the manifest's columns (astropy writes the YAML)."""
    from astropy.table import Table
    from astropy.table.meta import get_yaml_from_table

    names = list(MANIFEST_COLUMNS)
    # numpy's str (not object) is what astropy writes as a plain ``string`` column
    empty = Table(names=names, dtype=[str if _datatype(c) == "string" else _NUMPY[_datatype(c)]
                                      for c in names])
    for name, description in MANIFEST_COLUMNS.items():
        empty[name].description = description
    for name in FLOAT_COLUMNS:
        empty[name].unit = "deg"
    empty.meta.update(meta)
    yaml_lines = ["%ECSV 1.0", "---", *get_yaml_from_table(empty), "schema: astropy-2.0"]
    return [f"# {line}\n" for line in yaml_lines]


def write_manifest(path: Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]):
    """Write ``rows`` (dicts with every manifest column) to ``path`` atomically.

    Args:
        path: the manifest file.
        rows: one dict per image, in ``image_id`` order.
        meta: table metadata (written in the ECSV header).
    """
    names = list(MANIFEST_COLUMNS)
    kinds = [_datatype(c) for c in names]
    convert = {"int64": int, "float64": float, "string": str}
    with atomic_write(Path(path)) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.writelines(_header_lines(meta))
        # every string quoted, so that an empty one is "" (a space-separated
        # reader would otherwise merge the two spaces around it)
        writer = csv.writer(f, delimiter=" ", quoting=csv.QUOTE_NONNUMERIC,
                            lineterminator="\n")
        f.write(" ".join(names) + "\n")
        for row in rows:
            writer.writerow([convert[kind](row[name]) for name, kind in zip(names, kinds)])


def _read_header(f) -> tuple[dict, str | None]:
    """The parsed YAML header of an open ECSV file, and the first line after it."""
    from astropy.table.meta import get_header_from_yaml

    lines, first = [], None
    for line in f:
        if not line.startswith("#"):
            first = line
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    if not lines or not lines[0].startswith("%ECSV"):
        raise ValueError(f"{getattr(f, 'name', 'the file')} is not an ECSV file")
    return get_header_from_yaml([line.rstrip("\n") for line in lines[1:]]), first


def _readable_here(header: dict) -> bool:
    return header.get("delimiter", " ") == " " and all(
        set(col) <= {"name", "datatype", "description", "unit"}
        and col.get("datatype") in _PARSERS for col in header.get("datatype", ()))


def _read_with_astropy(path):
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


def read_manifest(path: str | os.PathLike[str]):
    """Read the manifest as an astropy Table, sorted by ``image_id``, nothing masked.

    String columns are object arrays of ``str`` (see the module's docstring).

    Raises:
        ValueError: the file is not ECSV, or a row does not match its header.
    """
    from astropy.table import Column, Table

    with open(path, encoding="utf-8", newline="") as f:
        header, first = _read_header(f)
        if not _readable_here(header):
            return _read_with_astropy(path)
        cols = header["datatype"]
        names = [c["name"] for c in cols]
        if first is None or next(csv.reader([first], delimiter=" ")) != names:
            raise ValueError(f"{path}: the column names line does not match the header's "
                             f"columns {names}")
        parsers = [_PARSERS[c["datatype"]] for c in cols]
        values: list[list] = [[] for _ in cols]
        distinct: list[dict[str, str]] = [{} for _ in cols]  # one object per distinct string
        strings = [c["datatype"] == "string" for c in cols]
        for line, row in enumerate(csv.reader(f, delimiter=" "), start=2):
            if len(row) != len(cols):
                raise ValueError(f"{path}: data row {line} has {len(row)} fields, "
                                 f"the header names {len(cols)}")
            for value, parse, out, seen, is_string in zip(row, parsers, values, distinct,
                                                          strings):
                out.append(seen.setdefault(value, value) if is_string else parse(value))
    columns = []
    for col, data in zip(cols, values):
        array = np.empty(len(data), dtype=_NUMPY[col["datatype"]])
        array[:] = data
        columns.append(Column(array, name=col["name"], description=col.get("description"),
                              unit=col.get("unit"), copy=False))
    table = Table(columns, meta=header.get("meta") or {}, copy=False)
    if "image_id" in table.colnames and np.any(np.diff(table["image_id"]) < 0):
        table.sort("image_id")
    return table


def read_manifest_meta(path: str | os.PathLike[str]) -> dict:
    """The manifest's table metadata, read from its ECSV header only.

    Reading a whole manifest of 10⁶ rows takes seconds; checks that only need
    the metadata (e.g. ``pixels_sha256``) read the YAML header lines instead.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        header, _ = _read_header(f)
    return dict(header.get("meta") or {})
