"""Bulk load of one model's neighbours: binary COPY into a staging table, swap.

The neighbours of a model are stored in ``similarity.neighbour_sets``, a table
partitioned by ``model_id`` holding one row per image with the neighbour ids
and distances as arrays (``sql/neighbour_sets.sql``; docs/publish.md says why).
Publishing a model happens in one transaction:

1. create a staging table ``neighbour_sets_m<id>_stage`` and fill it with
   PostgreSQL's binary COPY, encoded here with numpy (no Python loop per row);
2. build its unique index and a ``CHECK (model_id = <id>)`` constraint, so that
   attaching it needs neither an index build nor a validation scan;
3. detach and drop the model's old partition, attach the staging table in its
   place, commit.

Readers (TAP queries through the views) see the old rows or the new ones: the
swap's locks make them wait a few milliseconds at most, never fail.  A publish
killed at any point rolls back with its connection, leaving the previous
partition, and so every published row, as it was.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import numpy as np

__all__ = ["COPY_HEADER", "COPY_TRAILER", "encode_copy_rows", "load_model_partition"]

log = logging.getLogger(__name__)

#: PostgreSQL binary COPY file header (signature, flags, extension length) and trailer.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], ">i4").tobytes()
COPY_TRAILER = np.array([-1], ">i2").tobytes()

_INT4_OID, _FLOAT4_OID = 23, 700
PARENT = "similarity.neighbour_sets"

#: Environment variable for tests: seconds to sleep after the first COPY block,
#: so that a test can kill a publish in the middle of its COPY.
PAUSE_ENV = "VO_SIM_PUBLISH_PAUSE_IN_COPY"


def _row_dtype(k: int) -> np.dtype:
    """The fixed-size layout of one COPY row for ``k`` neighbours."""
    array_header = [("len", ">i4"), ("ndim", ">i4"), ("hasnull", ">i4"), ("oid", ">i4"),
                    ("dim", ">i4"), ("lbound", ">i4")]
    return np.dtype([
        ("nfields", ">i2"),
        ("model_len", ">i4"), ("model_id", ">i2"),
        ("image_len", ">i4"), ("image_id", ">i4"),
        ("outlier_len", ">i4"), ("outlier", ">f4"),
        ("ids_header", array_header), ("ids", [("len", ">i4"), ("value", ">i4")], (k,)),
        ("dist_header", array_header), ("dists", [("len", ">i4"), ("value", ">f4")], (k,)),
    ])


def encode_copy_rows(
    model_id: int,
    image_ids: np.ndarray,
    neighbour_ids: np.ndarray,
    dists: np.ndarray,
    outlier: np.ndarray | None = None,
) -> bytes:
    """Encode rows of ``neighbour_sets`` in PostgreSQL's binary COPY format.

    Columns, in order: ``model_id smallint, image_id integer, outlier real,
    neighbour_ids integer[], dists real[]``.  The result has no header or
    trailer, so blocks can be streamed one after the other.

    Args:
        model_id: the model these neighbours belong to.
        image_ids: int [B], the query images.
        neighbour_ids: int [B, k], neighbours in rank order.
        dists: float [B, k], their distances.
        outlier: float [B] outlier scores (NaN where unknown), or None.

    Returns:
        The encoded rows.
    """
    image_ids = np.asarray(image_ids)
    neighbour_ids = np.asarray(neighbour_ids)
    dists = np.asarray(dists)
    n, k = neighbour_ids.shape
    if dists.shape != (n, k) or image_ids.shape != (n,):
        raise ValueError(
            f"shapes disagree: image_ids {image_ids.shape}, neighbour_ids "
            f"{neighbour_ids.shape}, dists {dists.shape}"
        )
    rows = np.zeros(n, dtype=_row_dtype(k))
    rows["nfields"] = 5
    rows["model_len"], rows["model_id"] = 2, model_id
    rows["image_len"], rows["image_id"] = 4, image_ids
    rows["outlier_len"] = 4
    rows["outlier"] = np.nan if outlier is None else outlier
    for header, values, oid, src in (("ids_header", "ids", _INT4_OID, neighbour_ids),
                                     ("dist_header", "dists", _FLOAT4_OID, dists)):
        h = rows[header]
        h["len"], h["ndim"], h["hasnull"], h["oid"] = 20 + 8 * k, 1, 0, oid
        h["dim"], h["lbound"] = k, 1
        rows[values]["len"] = 4
        rows[values]["value"] = src
    return rows.tobytes()


def _partition_name(model_id: int) -> str:
    return f"neighbour_sets_m{int(model_id)}"


def load_model_partition(
    conn,
    model_id: int,
    image_ids: np.ndarray,
    neighbour_ids: np.ndarray,
    dists: np.ndarray,
    outlier: np.ndarray | None = None,
    *,
    block_rows: int = 2000,
    lock_timeout_s: float = 5.0,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Replace the neighbours of one model atomically (module docstring).

    Args:
        conn: a psycopg 3 connection as ``gavoadmin`` (not in a transaction).
        model_id: the model's id (``similarity.models.model_id``).
        image_ids: int [N] query images; may be memory-mapped.
        neighbour_ids: int [N, k] neighbour image ids in rank order.
        dists: float [N, k] distances.
        outlier: float [N] outlier scores, or None.
        block_rows: images encoded and sent per COPY write.
        lock_timeout_s: how long the swap waits for readers before it retries.
        progress: called with the number of images sent after each block.

    Returns:
        Seconds the swap itself held its locks (from detach to commit).
    """
    from psycopg import sql

    model_id = int(model_id)
    if not -32768 <= model_id <= 32767:
        raise ValueError(f"model_id {model_id} does not fit a smallint")
    part = _partition_name(model_id)
    stage = f"{part}_stage"
    order = np.argsort(image_ids, kind="stable")
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)

    with conn.transaction():
        cur = conn.cursor()
        # Only one publish per model at a time (released at commit/rollback).
        cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (0x5E1A, model_id))
        if not cur.fetchone()[0]:
            raise RuntimeError(f"another publish of model_id {model_id} is running")
        cur.execute(sql.SQL(
            "CREATE TABLE similarity.{} (LIKE similarity.neighbour_sets INCLUDING STORAGE)"
        ).format(sql.Identifier(stage)))
        copy_sql = sql.SQL(
            "COPY similarity.{} (model_id, image_id, outlier, neighbour_ids, dists) "
            "FROM STDIN (FORMAT BINARY)").format(sql.Identifier(stage))
        with cur.copy(copy_sql) as copy:
            copy.write(COPY_HEADER)
            for start in range(0, len(order), block_rows):
                idx = np.sort(order[start:start + block_rows])
                copy.write(encode_copy_rows(
                    model_id, image_ids[idx], neighbour_ids[idx], dists[idx],
                    None if outlier is None else outlier[idx]))
                if progress is not None:
                    progress(len(idx))
                if pause and start == 0:
                    log.warning("pausing %.1f s inside COPY (%s is set)", pause, PAUSE_ENV)
                    time.sleep(pause)
            copy.write(COPY_TRAILER)
        cur.execute(sql.SQL(
            "ALTER TABLE similarity.{} ADD CONSTRAINT {} CHECK (model_id = {})"
        ).format(sql.Identifier(stage), sql.Identifier(f"{part}_model"), sql.Literal(model_id)))
        cur.execute(sql.SQL(
            "CREATE UNIQUE INDEX {} ON similarity.{} (model_id, image_id)"
        ).format(sql.Identifier(f"{stage}_key"), sql.Identifier(stage)))
        cur.execute(sql.SQL("ANALYZE similarity.{}").format(sql.Identifier(stage)))
        return _swap(conn, cur, model_id, part, stage, lock_timeout_s)


def _swap(conn, cur, model_id: int, part: str, stage: str, lock_timeout_s: float) -> float:
    """Detach and drop the old partition, attach ``stage`` in its place."""
    import psycopg
    from psycopg import sql

    cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
        sql.Literal(f"{int(lock_timeout_s * 1000)}ms")))
    for attempt in range(1, 61):
        try:
            with conn.transaction():  # a savepoint: a lock timeout keeps the COPY
                t0 = time.perf_counter()
                cur.execute("SELECT to_regclass(%s) IS NOT NULL",
                            (f"similarity.{part}",))
                if cur.fetchone()[0]:
                    cur.execute(sql.SQL("ALTER TABLE similarity.neighbour_sets "
                                        "DETACH PARTITION similarity.{}").format(
                        sql.Identifier(part)))
                    cur.execute(sql.SQL("DROP TABLE similarity.{}").format(sql.Identifier(part)))
                cur.execute(sql.SQL("ALTER TABLE similarity.{} RENAME TO {}").format(
                    sql.Identifier(stage), sql.Identifier(part)))
                cur.execute(sql.SQL("ALTER INDEX similarity.{} RENAME TO {}").format(
                    sql.Identifier(f"{stage}_key"), sql.Identifier(f"{part}_key")))
                cur.execute(sql.SQL("ALTER TABLE similarity.neighbour_sets ATTACH PARTITION "
                                    "similarity.{} FOR VALUES IN ({})").format(
                    sql.Identifier(part), sql.Literal(model_id)))
                return time.perf_counter() - t0
        except psycopg.errors.LockNotAvailable:
            log.info("swap of model %d waits for readers (attempt %d)", model_id, attempt)
            time.sleep(0.2)
    raise RuntimeError(f"could not swap in model {model_id}: readers held locks for minutes")
