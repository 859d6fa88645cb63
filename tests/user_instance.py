"""What the operator's own DaCHS holds, as one digest, so the suite can prove it left it alone.

The digest covers every row of DaCHS's and our schemas (``similarity``,
``ivoa``, ``tap_schema``, ``dc``), the settings file, the files of DaCHS's
``etc/`` and of our resource directory, and whether the server answers. It
leaves out what a running server changes by itself: logs, state, caches and
the job tables of asynchronous queries.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vo_similarity.publish.dachs import DachsError, DachsSite

#: Schemas whose rows make up a DaCHS publication.
SCHEMAS = ("similarity", "ivoa", "tap_schema", "dc")
#: Tables a serving DaCHS writes by itself: the UWS jobs of async TAP and DataLink
#: queries, which users of the service may run while the suite does.
SERVER_STATE = ("tap_schema.tapjobs", "dc.datalinkjobs")


def _tables(conn) -> list[str]:
    rows = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname = ANY(%s) ORDER BY 1", (list(SCHEMAS),)).fetchall()
    return [name for (name,) in rows if name not in SERVER_STATE]


def rows_digest(site: DachsSite) -> dict[str, str]:
    """Table name -> MD5 of its rows (as text, sorted) for every table of :data:`SCHEMAS`."""
    result = {}
    with site.connect(autocommit=True) as conn:
        for table in _tables(conn):
            # the table name comes from the catalogue, quoted by quote_ident
            (digest,) = conn.execute(
                f"SELECT md5(COALESCE(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
                f" || ':' || count(*) FROM {table} AS t").fetchone()
            result[table] = digest
    return result


def files_digest(site: DachsSite) -> dict[str, str]:
    """Path -> SHA-256 of the settings file, ``etc/*`` and our resource directory."""
    paths = [site.settings, *sorted((site.root / "etc").glob("*")),
             *sorted(p for p in site.resdir.rglob("*") if p.is_file() or p.is_symlink())]
    result = {}
    for path in paths:
        if path.is_symlink():
            result[str(path)] = "-> " + str(path.readlink())
        elif path.is_file():
            result[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def instance_state(site: DachsSite) -> dict[str, object]:
    """Everything :func:`rows_digest` and :func:`files_digest` see, and whether it answers."""
    try:
        site.check_running(timeout=10)
        running = True
    except DachsError:
        running = False
    try:
        rows: object = rows_digest(site)
    except DachsError as exc:  # no database (e.g. PostgreSQL stopped): compare that fact
        rows = f"unreachable: {type(exc).__name__}"
    return {"running": running, "rows": rows, "files": files_digest(site)}


def user_site(settings: Path) -> DachsSite | None:
    """The operator's DaCHS, or None where there is none on this machine."""
    if not settings.is_file():
        return None
    site = DachsSite.from_config(settings)
    return site if (site.root / "etc" / "feed").is_file() else None


def differences(before: dict, after: dict) -> list[str]:
    """Readable list of what changed between two :func:`instance_state` results."""
    out = []
    if before["running"] != after["running"]:
        out.append(f"server answering: {before['running']} -> {after['running']}")
    for part in ("rows", "files"):
        b, a = before[part], after[part]
        if not isinstance(b, dict) or not isinstance(a, dict):
            if b != a:
                out.append(f"{part}: {b} -> {a}")
            continue
        for key in sorted(set(b) | set(a)):
            if b.get(key) != a.get(key):
                out.append(f"{part} {key}: {b.get(key)} -> {a.get(key)}")
    return out
