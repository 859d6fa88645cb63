"""Bring an installation published by an older vo-similarity up to date.

DaCHS creates ``similarity.models`` at its first import and never changes an
existing table of an ``updating`` data element, so columns added to the RD
later are added here (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``: nothing is
dropped or rewritten), and the JSON files DaCHS imports the rows from get the
new keys (null) where they lack them.
"""

from __future__ import annotations

import json
import logging

from ..workdir import atomic_write
from .dachs import DachsSite

__all__ = ["MODEL_COLUMNS", "SELECTION_COLUMNS", "migrate", "migrate_selections"]

log = logging.getLogger(__name__)

#: Columns of similarity.models added after its first release, with their SQL types.
MODEL_COLUMNS = {"dim": "smallint", "weights_url": "text", "weights_sha256": "text",
                 "preprocess": "text"}
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
    folder = site.resdir / "data" / "models"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text(encoding="utf-8"))
        if all(c in record for c in MODEL_COLUMNS):
            continue
        record.update({c: record.get(c) for c in MODEL_COLUMNS})
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        log.info("%s: added the keys %s", path, ", ".join(MODEL_COLUMNS))
    return missing


def migrate_selections(conn) -> list[str]:
    """Add the new columns of ``similarity.selections`` (a table DaCHS created
    before they existed); nothing is dropped.

    Args:
        conn: a psycopg 3 connection as ``gavoadmin`` (autocommit).

    Returns:
        The columns added (then ``dachs imp -m`` is due).
    """
    return _add_columns(conn, "selections", SELECTION_COLUMNS)
