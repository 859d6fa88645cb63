"""Recorded selections: read from the DaCHS service or an exported file, written to a file.

The web page records what a user marked similar or not similar to a query
image in ``similarity.selections`` (docs/web.md): one row per mark, with the
query's ``image_id``, the marked ``chosen_id``, ``is_similar``, ``created``
(UTC), ``session_id`` and the ``model_id`` whose neighbours were shown.  Both
ids are ``similarity.images.image_id``, which is the manifest's ``image_id``
and the model's ``embedding_ids`` (docs/selections.md).

:func:`read_selections` takes them from the service through TAP (pyvo, the one
TAP client of the project) or from a file exported with pyvo, STILTS or TOPCAT
(VOTable, CSV, ECSV, FITS); :func:`write_selections` writes such a file with the
service's column names, so that either reads back the same.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from astropy.table import Table

    from vo_similarity.publish.dachs import DachsSite

__all__ = ["QUERY", "Selections", "read_selections", "write_selections"]

log = logging.getLogger(__name__)

#: the ADQL statement that reads every recorded selection from the service
QUERY = ("SELECT model_id, image_id, chosen_id, is_similar, created, session_id "
         "FROM similarity.selections ORDER BY created, image_id, chosen_id")

#: file suffix -> astropy's format name, for reading and writing
FORMATS = {".xml": "votable", ".vot": "votable", ".votable": "votable", ".csv": "ascii.csv",
           ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fts": "fits"}

_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}

#: column descriptions of a written file (those of the RD's similarity.selections)
_DESCRIPTIONS = {
    "model_id": "Model whose neighbours the user was looking at (-1 or empty: unknown).",
    "image_id": "The query image (similarity.images.image_id).",
    "chosen_id": "The image the user marked (similarity.images.image_id).",
    "is_similar": "True: marked similar; false: marked not similar.",
    "created": "When the user made the selection (UTC, ISO 8601; empty: unknown).",
    "session_id": "Random id of the browser tab the selection came from (empty: unknown).",
}


@dataclass(frozen=True)
class Selections:
    """Recorded marks, one row per mark, as row-aligned arrays.

    Attributes:
        query_id: int64 [M], the query image (``similarity.selections.image_id``).
        chosen_id: int64 [M], the marked image.
        is_similar: bool [M], marked similar (True) or not similar (False).
        session_id: str [M] (object array), "" where unknown.
        created: datetime64[us] [M] in UTC, NaT where unknown.
        model_id: int64 [M], the model whose neighbours were shown, -1 where unknown.

    The constructor takes anything array-like and converts it to these types.
    """

    query_id: np.ndarray
    chosen_id: np.ndarray
    is_similar: np.ndarray
    session_id: np.ndarray
    created: np.ndarray
    model_id: np.ndarray

    def __post_init__(self) -> None:
        converted = {
            "query_id": np.asarray(self.query_id, dtype=np.int64),
            "chosen_id": np.asarray(self.chosen_id, dtype=np.int64),
            "is_similar": np.asarray(self.is_similar, dtype=bool),
            "session_id": np.array(["" if s is None else str(s)
                                    for s in np.asarray(self.session_id, dtype=object)],
                                   dtype=object),
            "created": np.asarray(self.created, dtype="datetime64[us]"),
            "model_id": np.asarray(self.model_id, dtype=np.int64),
        }
        shapes = {name: a.shape for name, a in converted.items()}
        if any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) != 1:
            raise ValueError(f"the columns of Selections must be 1-D of one length: {shapes}")
        for name, value in converted.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.query_id)

    def __repr__(self) -> str:
        span = ""
        known = self.created[~np.isnat(self.created)]
        if len(known):
            span = f", {known.min()} to {known.max()}"
        return (f"<Selections: {len(self)} marks ({int(self.is_similar.sum())} similar) "
                f"on {len(np.unique(self.query_id))} queries{span}>")

    @classmethod
    def empty(cls) -> Selections:
        """No selection at all."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool),
                   np.zeros(0, object), np.zeros(0, "datetime64[us]"), np.zeros(0, np.int64))

    def subset(self, mask_or_index) -> Selections:
        """The rows a boolean mask, an index array or a slice selects, in that order."""
        index = mask_or_index
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool and index.shape != (len(self),):
                raise ValueError(f"a mask of {index.shape} for {len(self)} selections")
            index = index if index.dtype == bool else index.astype(np.int64)  # [] too
        return Selections(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def since(self, t: np.datetime64 | str | None) -> Selections:
        """The rows recorded after ``t`` (``created > t``, UTC); all of them for None.

        Rows whose time is unknown (NaT) are not after any time.
        """
        if t is None:
            return self
        return self.subset(self.created > np.datetime64(t, "us"))

    def in_collection(self, offset: int) -> Selections:
        """The rows of the collection whose published ids start at ``offset``, with the
        work directory's ids (the published ones less ``offset``;
        :mod:`vo_similarity.publish.collections`)."""
        from vo_similarity.publish.collections import ID_STRIDE

        inside = ((self.query_id >= offset) & (self.query_id < offset + ID_STRIDE)
                  & (self.chosen_id >= offset) & (self.chosen_id < offset + ID_STRIDE))
        kept = self.subset(inside)
        return replace(kept, query_id=kept.query_id - offset, chosen_id=kept.chosen_id - offset)

    def restrict(self, image_ids) -> Selections:
        """The rows whose query and chosen image are both among ``image_ids``."""
        ids = np.asarray(image_ids, dtype=np.int64)
        return self.subset(np.isin(self.query_id, ids) & np.isin(self.chosen_id, ids))

    def split(self, held_out: float = 0.3) -> tuple[Selections, Selections]:
        """``(training, held_out)``: a query's marks all go to one side.

        The side is the fixed hash of the query's id that splits the images
        (:func:`vo_similarity.learn.data.is_validation`), so the split does not
        depend on which other selections there are, and a query held out today
        is held out tomorrow.
        """
        if not 0.0 <= held_out <= 1.0:
            raise ValueError(f"held_out must lie in [0, 1], not {held_out}")
        from vo_similarity.learn.data import is_validation

        val = is_validation(self.query_id, held_out)
        return self.subset(~val), self.subset(val)

    def latest(self) -> np.datetime64 | None:
        """The time of the last known selection; None when no row has a time."""
        known = self.created[~np.isnat(self.created)]
        return known.max() if len(known) else None

    # -- tables ---------------------------------------------------------------
    def to_table(self) -> Table:
        """An astropy Table with the service's column names; unknown values masked."""
        from astropy.table import MaskedColumn, Table

        created = np.array(["" if np.isnat(t) else str(t) for t in self.created], dtype=str)
        table = Table()
        table["model_id"] = MaskedColumn(self.model_id, mask=self.model_id < 0)
        table["image_id"] = self.query_id
        table["chosen_id"] = self.chosen_id
        table["is_similar"] = self.is_similar
        table["created"] = created if len(created) else np.zeros(0, dtype="U26")
        table["session_id"] = (np.array(self.session_id, dtype=str) if len(self)
                               else np.zeros(0, dtype="U1"))
        for name, text in _DESCRIPTIONS.items():
            table[name].description = text
        return table

    @classmethod
    def from_table(cls, table: Table, *, where: str = "the table") -> Selections:
        """Read a table with the columns of ``similarity.selections``.

        Column names are matched without regard to case; the query column is
        ``image_id`` (the service's name) or ``query_id``. ``chosen_id`` and
        ``is_similar`` are required too; ``created``, ``session_id`` and
        ``model_id`` may be missing or empty (unknown).

        Raises:
            ValueError: a required column is missing, or holds empty or
                unreadable values; the message names ``where``.
        """
        names = {name.lower(): name for name in table.colnames}
        query = names.get("query_id") or names.get("image_id")
        missing = [c for c, have in (("image_id (or query_id)", query),
                                     ("chosen_id", names.get("chosen_id")),
                                     ("is_similar", names.get("is_similar"))) if not have]
        if missing:
            raise ValueError(f"{where} lacks the column(s) {', '.join(missing)} of "
                             f"similarity.selections; it has {', '.join(table.colnames) or 'none'}")
        n = len(table)

        def column(key: str):
            return table[names[key]] if key in names else None

        return cls(
            query_id=_ids(table[query], query, where),
            chosen_id=_ids(column("chosen_id"), "chosen_id", where),
            is_similar=_booleans(column("is_similar"), where),
            session_id=_texts(column("session_id"), n),
            created=_times(column("created"), n, where),
            model_id=_ids(column("model_id"), "model_id", where, missing=-1, n=n),
        )


# -- reading columns -----------------------------------------------------------

def _mask(col) -> np.ndarray:
    return np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), dtype=bool).reshape(-1)


def _ids(col, name: str, where: str, *, missing: int | None = None, n: int = 0) -> np.ndarray:
    """Integer ids; empty cells are an error, or ``missing`` where one is given."""
    if col is None:
        return np.full(n, missing, dtype=np.int64)
    mask = _mask(col)
    if mask.any() and missing is None:
        raise ValueError(f"{where}: {int(mask.sum())} rows have no {name}")
    raw = np.array(np.ma.getdata(col)).reshape(-1)
    raw[mask] = 0
    if raw.dtype.kind in "iu":
        out = raw.astype(np.int64)
    else:
        try:
            values = raw.astype(np.float64)
        except (ValueError, TypeError):
            values = np.array([np.nan])
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"{where}: the column {name} does not hold integer ids")
        out = values.astype(np.int64)
    if missing is not None:
        out[mask] = missing
    return out


def _booleans(col, where: str) -> np.ndarray:
    """``is_similar``: booleans, 0/1, or the words true/false (t/f, yes/no)."""
    mask = _mask(col)
    if mask.any():
        raise ValueError(f"{where}: {int(mask.sum())} rows have no is_similar")
    values = np.asarray(col)
    if values.dtype == bool:
        return values.copy()
    if values.dtype.kind in "iu":
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"{where}: is_similar holds numbers other than 0 and 1")
        return values.astype(bool)
    words = [str(v).strip().lower() for v in values]
    bad = sorted({w for w in words if w not in _TRUE | _FALSE})
    if bad:
        raise ValueError(f"{where}: is_similar holds {bad[:3]}; expected true or false")
    return np.array([w in _TRUE for w in words], dtype=bool)


def _texts(col, n: int) -> np.ndarray:
    if col is None:
        return np.full(n, "", dtype=object)
    mask = _mask(col)
    values = [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(col)]
    return np.array(["" if m else v.strip() for v, m in zip(values, mask)], dtype=object)


def _times(col, n: int, where: str) -> np.ndarray:
    """UTC times from an astropy Time column, datetime64, or ISO 8601 text; NaT where empty."""
    if col is None:
        return np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    from astropy.time import Time

    if isinstance(col, Time):
        out = np.asarray(col.utc.datetime64, dtype="datetime64[us]")
        return np.where(_mask(col), np.datetime64("NaT"), out).astype("datetime64[us]")
    mask = _mask(col)
    values = np.asarray(col)
    if values.dtype.kind == "M":
        out = values.astype("datetime64[us]")
        out[mask] = np.datetime64("NaT")
        return out
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    for i, (v, m) in enumerate(zip(values, mask)):
        text = (v.decode() if isinstance(v, bytes) else str(v)).strip()
        if m or not text:
            continue
        # ISO 8601 in UTC as DaCHS, TOPCAT and astropy write it; "Z" or "+00:00" allowed
        text = text.replace(" ", "T", 1)
        for suffix in ("Z", "+00:00", "+0000"):
            text = text.removesuffix(suffix)
        try:
            out[i] = np.datetime64(text, "us")
        except ValueError:
            raise ValueError(f"{where}: created holds {text[:40]!r}, not an ISO 8601 time "
                             "in UTC") from None
    return out


# -- sources ---------------------------------------------------------------------

def _format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown kind of file {path.suffix!r}; selections are read "
                         f"from and written to {', '.join(sorted(FORMATS))} files, the "
                         "service ('service') or a TAP URL")
    return fmt


def _read_tap(url: str, *, maxrec: int | None = None) -> Table:
    """Every row of similarity.selections at the TAP service ``url``, through pyvo.

    Raises:
        RuntimeError: the service does not answer, refuses the query, or would
            return fewer rows than there are (its limit).
    """
    import pyvo
    from pyvo.dal.exceptions import DALServiceError

    service = pyvo.dal.TAPService(url)
    try:
        limit = maxrec or service.hardlimit
        result = service.run_sync(QUERY, maxrec=limit)
    except DALServiceError as exc:
        raise RuntimeError(f"cannot read similarity.selections from the TAP service at "
                           f"{url}: {exc}") from exc
    except pyvo.DALQueryError as exc:
        raise RuntimeError(f"the TAP service at {url} refuses to list similarity.selections "
                           f"({exc}); is vo-similarity published there?") from exc
    if result.query_status == "OVERFLOW":
        raise RuntimeError(f"the TAP service at {url} returns at most {len(result)} rows "
                           "(its limit), fewer than similarity.selections holds")
    return result.to_table()


def _collection_offset(url: str, collection: str) -> int | None:
    """Where collection ``collection``'s ids start at the TAP service ``url``
    (None: it has no images there)."""
    import pyvo

    from vo_similarity.publish.collections import (
        DEFAULT_COLLECTION,
        check_collection_name,
        offset_of,
    )

    name = check_collection_name(collection)  # letters, digits, . _ -: a safe literal
    try:
        table = pyvo.dal.TAPService(url).run_sync(
            f"SELECT MIN(image_id) AS lo FROM similarity.images WHERE collection = '{name}'"
        ).to_table()
    except pyvo.DALQueryError:
        if name == DEFAULT_COLLECTION:  # a service published before collections: one, ids as given
            return 0
        raise
    lo = table["lo"][0] if len(table) else None
    if lo is None or np.ma.is_masked(lo):
        return None
    return offset_of(lo)


def read_selections(source: str | os.PathLike[str], *,
                    site: DachsSite | None = None, collection: str | None = None) -> Selections:
    """Read recorded selections from the service or from an exported file.

    Args:
        source: ``"service"``: the DaCHS site's ``similarity.selections``
            through its TAP service; an ``http://`` or ``https://`` TAP endpoint
            URL (e.g. ``http://127.0.0.1:8080/tap``); or a file exported from
            one (VOTable ``.xml``/``.vot``, ``.csv``, ``.ecsv``, ``.fits``;
            :func:`write_selections` writes them too).
        site: the DaCHS installation for ``"service"``; default
            :meth:`DachsSite.from_config` (``$GAVOSETTINGS``, else
            ``/etc/gavo.rc``), as ``vo-similarity publish`` does.
        collection: with a service, the selections of this collection only,
            with its work directory's image ids (the service's less the
            collection's offset); files hold a work directory's ids already.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown kind of file, or a table without the columns.
        RuntimeError: the service cannot be read (``DachsError`` when there is
            no DaCHS settings file).
    """
    text = os.fspath(source)
    if text == "service":
        if site is None:
            from vo_similarity.publish.dachs import DachsSite

            site = DachsSite.from_config()
        url = site.tap_url
    elif text.lower().startswith(("http://", "https://")):
        url = text
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such file of selections: {path} (or give 'service' "
                                    "or a TAP URL)")
        from astropy.table import Table
        from astropy.units import UnitsWarning

        fmt = _format_of(path)
        try:
            with warnings.catch_warnings():  # units (STILTS's "iso-8601") do not matter here
                warnings.simplefilter("ignore", UnitsWarning)
                table = Table.read(path, format=fmt)
        except Exception as exc:  # astropy's readers raise many kinds
            raise ValueError(f"{path} is not a readable {fmt} file: {exc}") from exc
        selections = Selections.from_table(table, where=str(path))
        log.info("read %d selections from %s", len(selections), path)
        return selections
    selections = Selections.from_table(_read_tap(url), where=f"similarity.selections at {url}")
    log.info("read %d selections from %s", len(selections), url)
    if collection is not None:
        offset = _collection_offset(url, collection)
        if offset is None:
            log.warning("collection %s has no images at %s: none of its selections", collection,
                        url)
            return Selections.empty()
        selections = selections.in_collection(offset)
        log.info("%d of them are of collection %s", len(selections), collection)
    return selections


def write_selections(sel: Selections, path: str | os.PathLike[str]) -> Path:
    """Write ``sel`` to a file, of the kind its suffix names (``.ecsv``, ``.xml``/``.vot``
    VOTable, ``.csv``, ``.fits``), with the service's column names; atomically.

    :func:`read_selections` reads it back to the same values.
    """
    from vo_similarity.workdir import atomic_write

    path = Path(path).expanduser()
    fmt = _format_of(path)
    with atomic_write(path) as tmp:
        sel.to_table().write(tmp, format=fmt, overwrite=True)
    log.info("wrote %d selections to %s", len(sel), path)
    return path
