"""Bring an installation published by an older vo-similarity up to date.

DaCHS creates ``similarity.models`` at its first import and never changes an
existing table of an ``updating`` data element, so columns added to the RD
later are added here (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``: nothing is
dropped or rewritten), and the JSON files DaCHS imports the rows from get the
new keys (null) where they lack them.

Before collections (:mod:`.collections`) a server held one image set: its
images, models and files become collection ``vo-similarity``'s, and the model
files ``data/models/<name>.json`` are renamed ``m<model_id>.json``.
"""

from __future__ import annotations

import csv
import json
import logging

from ..workdir import atomic_write
from .collections import DEFAULT_COLLECTION
from .dachs import RD_ID, DachsSite

__all__ = ["IMAGE_COLUMNS", "MODEL_COLUMNS", "SELECTION_COLUMNS", "migrate", "migrate_obscore",
           "migrate_selections"]

log = logging.getLogger(__name__)

#: Columns of similarity.models added after its first release, with their SQL types.
MODEL_COLUMNS = {"dim": "smallint", "weights_url": "text", "weights_sha256": "text",
                 "preprocess": "text", "collection": "text"}
#: Columns of similarity.images added after its first release.
IMAGE_COLUMNS = {"collection": "text"}
#: Columns of similarity.selections added after its first release.
SELECTION_COLUMNS = {"session_id": "text"}


def _add_columns(conn, table: str, columns: dict[str, str]) -> list[str]:
    """Add those of ``columns`` (name -> SQL type) that ``similarity.<table>`` lacks,
    in one transaction; nothing where the table does not exist yet."""
    have = {name for (name,) in conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'similarity' AND table_name = %s", (table,))}
    missing = [c for c in columns if have and c not in have]
    if missing:
        with conn.transaction():
            for column in missing:
                conn.execute(f"ALTER TABLE similarity.{table} ADD COLUMN IF NOT EXISTS "
                             f"{column} {columns[column]}")
        log.info("similarity.%s: added the columns %s", table, ", ".join(missing))
    return missing


def migrate(conn, site: DachsSite) -> list[str]:
    """Add the new columns of ``similarity.models`` and keys of its JSON files.

    Args:
        conn: a psycopg 3 connection as ``gavoadmin`` (autocommit).
        site: the DaCHS installation.

    Returns:
        The columns added (empty when the table is new or up to date); then
        DaCHS's metadata (``dachs imp -m``) must be refreshed.
    """
    missing = _add_columns(conn, "models", MODEL_COLUMNS)
    added_images = _add_columns(conn, "images", IMAGE_COLUMNS)
    for table, added in (("models", missing), ("images", added_images)):
        if "collection" in added:
            conn.execute(f"UPDATE similarity.{table} SET collection = %s "
                         "WHERE collection IS NULL", (DEFAULT_COLLECTION,))
    folder = site.resdir / "data" / "models"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text(encoding="utf-8"))
        target = folder / f"m{int(record['model_id'])}.json"
        if all(c in record for c in MODEL_COLUMNS) and path == target:
            continue
        record.update({c: record.get(c) for c in MODEL_COLUMNS})
        record["collection"] = record["collection"] or DEFAULT_COLLECTION
        with atomic_write(target) as tmp:
            tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        if path != target:
            path.unlink()
        log.info("%s: brought up to date as %s", path, target.name)
    _migrate_images_file(site)
    return missing + [f"images.{c}" for c in added_images]


#: how ivoa.obscore's definition reads where similarity.images gave one collection
_ONE_COLLECTION = "'vo-similarity'::text AS obs_collection"


def migrate_obscore(conn, site: DachsSite) -> bool:
    """Rebuild ``ivoa.obscore`` where it still gives every image of ours collection
    vo-similarity (DaCHS updates the table's ObsCore fragment with its metadata,
    ``dachs imp -m``, but rebuilds the view only when told).

    Returns:
        True if the view was rebuilt.
    """
    row = conn.execute("SELECT pg_get_viewdef(to_regclass('ivoa.obscore'))").fetchone()
    if not row or not row[0] or _ONE_COLLECTION not in row[0]:
        return False
    site.run("imp", "-m", RD_ID)
    site.run("imp", "//obscore", "create")
    log.info("ivoa.obscore rebuilt: obs_collection is now similarity.images.collection")
    return True


def _migrate_images_file(site: DachsSite) -> None:
    """``data/images.csv`` (one image set) becomes collection vo-similarity's file."""
    data = site.resdir / "data"
    old = data / "images.csv"
    if not old.is_file():
        return
    new = data / "collections" / f"{DEFAULT_COLLECTION}.csv"
    new.parent.mkdir(parents=True, exist_ok=True)
    if not new.is_file():
        with open(old, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        with atomic_write(new) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([rows[0][0], "collection", *rows[0][1:]])
            writer.writerows([row[0], DEFAULT_COLLECTION, *row[1:]] for row in rows[1:])
        stamp = data / "images.sha256"
        if stamp.is_file():
            (new.parent / f"{DEFAULT_COLLECTION}.sha256").write_text(
                f"{stamp.read_text().strip()} 0\n")
    (data / "images.sha256").unlink(missing_ok=True)
    old.unlink()
    log.info("%s is now %s", old, new)


def migrate_selections(conn) -> list[str]:
    """Add the new columns of ``similarity.selections`` (a table DaCHS created
    before they existed); nothing is dropped.

    Args:
        conn: a psycopg 3 connection as ``gavoadmin`` (autocommit).

    Returns:
        The columns added (then ``dachs imp -m`` is due).
    """
    return _add_columns(conn, "selections", SELECTION_COLUMNS)
