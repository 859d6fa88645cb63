"""Bulk load of one model's neighbours: binary COPY into a staging table, swap.

The neighbours of a model are stored in ``similarity.neighbour_sets``, a table
partitioned by ``model_id`` holding one row per image with the neighbour ids
and distances as arrays (``sql/neighbour_sets.sql``; docs/publish.md says why).
Publishing happens in two steps:

1. :func:`stage_model`, per model, in one transaction: a staging table
   ``neighbour_sets_m<id>_stage`` filled with PostgreSQL's binary COPY (encoded
   here with numpy, no Python loop per row), then its unique index and a
   ``CHECK (model_id = <id>)`` constraint, so that attaching it needs neither an
   index build nor a validation scan.  Not visible to readers.
2. :func:`swap_in`, for all models of a publication in one transaction: detach
   and drop the old partitions, attach the staging tables in their place.

3. :func:`update_partition`, instead, for a model of which ``update`` changed
   some rows (:mod:`.increments`): those rows deleted and inserted anew in
   the live partition, in one transaction; the others are not rewritten.

Readers (TAP queries through the views) see the old rows or the new ones: the
swap's locks make them wait a few milliseconds at most, never fail.  A publish
killed at any point leaves the published partitions as they were: an
uncommitted COPY rolls back with its connection, and a committed staging table
is not visible (the next publish replaces it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import numpy as np

__all__ = ["COPY_HEADER", "COPY_TRAILER", "encode_copy_rows", "load_model_partition",
           "stage_model", "swap_in", "update_partition"]

log = logging.getLogger(__name__)

#: PostgreSQL binary COPY file header (signature, flags, extension length) and trailer.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], ">i4").tobytes()
COPY_TRAILER = np.array([-1], ">i2").tobytes()

_INT4_OID, _FLOAT4_OID = 23, 700
#: first key of the advisory locks of publication: (PUBLISH_LOCK, 0) is held by
#: a whole publish, (PUBLISH_LOCK, model_id) by one model's staging
PUBLISH_LOCK = 0x5E1A
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


def _shifted(ids: np.ndarray, offset: int) -> np.ndarray:
    """``ids + offset`` as int32, refusing what would not fit."""
    if not offset:
        return ids
    shifted = np.asarray(ids, dtype=np.int64) + int(offset)
    if shifted.size and (shifted.min() < -2**31 or shifted.max() >= 2**31):
        raise ValueError(f"image ids + {offset} do not fit an integer column")
    return shifted.astype(np.int32)


def _copy_rows(cur, table, model_id: int, arrays: tuple, rows: np.ndarray, block_rows: int,
               id_offset: int, after_block: Callable[[int, int], None] | None = None) -> None:
    """Binary COPY of the ``rows`` (indices) of ``arrays`` = (image_ids,
    neighbour_ids, dists, outlier or None) into ``similarity.<table>`` (an
    Identifier), ``block_rows`` at a time, ids plus ``id_offset``;
    ``after_block(start, n)`` after each block."""
    from psycopg import sql

    image_ids, neighbour_ids, dists, outlier = arrays
    copy_sql = sql.SQL("COPY similarity.{} (model_id, image_id, outlier, neighbour_ids, dists) "
                       "FROM STDIN (FORMAT BINARY)").format(table)
    with cur.copy(copy_sql) as copy:
        copy.write(COPY_HEADER)
        for start in range(0, len(rows), block_rows):
            idx = np.sort(rows[start:start + block_rows])
            copy.write(encode_copy_rows(
                model_id, _shifted(image_ids[idx], id_offset),
                _shifted(neighbour_ids[idx], id_offset), dists[idx],
                None if outlier is None else outlier[idx]))
            if after_block is not None:
                after_block(start, len(idx))
        copy.write(COPY_TRAILER)


def _lock_model(cur, model_id: int) -> None:
    """Only one publish per model at a time (released at commit/rollback)."""
    cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (PUBLISH_LOCK, model_id))
    if not cur.fetchone()[0]:
        raise RuntimeError(f"another publish of model_id {model_id} is running")


def _point_vector_files(cur, model_ids, staged) -> None:
    """``similarity.vector_files``: the rows of ``model_ids`` replaced by the
    ``staged`` vector files (:class:`.vectors.StagedVectors`; None: none)."""
    cur.execute("DELETE FROM similarity.vector_files WHERE model_id = ANY(%s)",
                ([int(m) for m in model_ids],))
    for s in staged:
        if s is not None:
            cur.execute("INSERT INTO similarity.vector_files (model_id, file, n_vectors, dim) "
                        "VALUES (%s, %s, %s, %s)", (s.model_id, s.file, s.n_vectors, s.dim))


def _in_one_transaction(conn, work: Callable, lock_timeout_s: float, what: str) -> float:
    """Run ``work(cursor)`` in one transaction that waits at most ``lock_timeout_s``
    for a lock and is tried again when it could not get one (readers delay it,
    never fail it); returns the seconds the successful try took."""
    import psycopg
    from psycopg import sql

    for attempt in range(1, 61):
        try:
            with conn.transaction():
                cur = conn.cursor()
                cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                    sql.Literal(f"{int(lock_timeout_s * 1000)}ms")))
                t0 = time.perf_counter()
                work(cur)
                took = time.perf_counter() - t0
            return took
        except psycopg.errors.LockNotAvailable:
            log.info("waiting for locks to %s (attempt %d)", what, attempt)
            time.sleep(0.2)
    raise RuntimeError(f"could not {what}: readers held locks for minutes")


def _partition_name(model_id: int) -> str:
    return f"neighbour_sets_m{int(model_id)}"


def _stage_name(model_id: int) -> str:
    return f"{_partition_name(model_id)}_stage"


def stage_model(
    conn,
    model_id: int,
    image_ids: np.ndarray,
    neighbour_ids: np.ndarray,
    dists: np.ndarray,
    outlier: np.ndarray | None = None,
    *,
    block_rows: int = 2000,
    progress: Callable[[int], None] | None = None,
    id_offset: int = 0,
) -> str:
    """COPY one model's neighbours into its staging table, index it, commit.

    Readers see nothing of it until :func:`swap_in` attaches it.  A staging
    table left by an earlier, killed publish is replaced.

    Args:
        conn: a psycopg 3 connection as ``gavoadmin`` (not in a transaction).
        model_id: the model's id (``similarity.models.model_id``).
        image_ids: int [N] query images; may be memory-mapped.
        neighbour_ids: int [N, k] neighbour image ids in rank order.
        dists: float [N, k] distances.
        outlier: float [N] outlier scores, or None.
        block_rows: images encoded and sent per COPY write.
        progress: called with the number of images sent after each block.
        id_offset: added to every image id (the collection's, :mod:`.collections`),
            block by block.

    Returns:
        The staging table's name (in schema ``similarity``).
    """
    from psycopg import sql

    model_id = int(model_id)
    if not -32768 <= model_id <= 32767:
        raise ValueError(f"model_id {model_id} does not fit a smallint")
    stage = sql.Identifier(_stage_name(model_id))
    order = np.argsort(image_ids, kind="stable")
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)

    with conn.transaction():
        cur = conn.cursor()
        _lock_model(cur, model_id)
        cur.execute(sql.SQL("DROP TABLE IF EXISTS similarity.{}").format(stage))
        cur.execute(sql.SQL(
            "CREATE TABLE similarity.{} (LIKE similarity.neighbour_sets INCLUDING STORAGE)"
        ).format(stage))
        def after_block(start: int, sent: int) -> None:
            if progress is not None:
                progress(sent)
            if pause and start == 0:
                log.warning("pausing %.1f s inside COPY (%s is set)", pause, PAUSE_ENV)
                time.sleep(pause)

        _copy_rows(cur, stage, model_id, (image_ids, neighbour_ids, dists, outlier), order,
                   block_rows, id_offset, after_block)
        cur.execute(sql.SQL(
            "ALTER TABLE similarity.{} ADD CONSTRAINT {} CHECK (model_id = {})"
        ).format(stage, sql.Identifier(f"{_partition_name(model_id)}_model"),
                 sql.Literal(model_id)))
        cur.execute(sql.SQL("CREATE UNIQUE INDEX {} ON similarity.{} (model_id, image_id)")
                    .format(sql.Identifier(f"{_stage_name(model_id)}_key"), stage))
        cur.execute(sql.SQL("ANALYZE similarity.{}").format(stage))
    return _stage_name(model_id)


def swap_in(conn, model_ids: list[int], drop: list[int] = (), *,
            lock_timeout_s: float = 5.0, vector_files: dict | None = None) -> float:
    """Attach the staged models in place of their old partitions, in one transaction.

    Args:
        conn: a psycopg 3 connection as ``gavoadmin`` (not in a transaction).
        model_ids: models whose staging tables (:func:`stage_model`) go in.
        drop: further models whose partitions go (unpublished) in the same step.
        lock_timeout_s: how long to wait for readers before retrying.
        vector_files: model id -> its new vector file
            (:class:`.vectors.StagedVectors`, or None: no embeddings) for every
            model of ``model_ids``; ``similarity.vector_files`` changes in the
            same transaction, so the search service reads the embeddings of the
            neighbours readers see.  None: leave that table alone.

    Returns:
        Seconds the swap held its locks.
    """
    from psycopg import sql

    def swap(cur) -> None:
        for mid in [*model_ids, *drop]:
            part = sql.Identifier(_partition_name(mid))
            cur.execute("SELECT to_regclass(%s) IS NOT NULL",
                        (f"similarity.{_partition_name(mid)}",))
            if cur.fetchone()[0]:
                cur.execute(sql.SQL("ALTER TABLE similarity.neighbour_sets "
                                    "DETACH PARTITION similarity.{}").format(part))
                cur.execute(sql.SQL("DROP TABLE similarity.{}").format(part))
        if vector_files is not None:
            _point_vector_files(cur, [*model_ids, *drop], vector_files.values())
        for mid in model_ids:
            part = sql.Identifier(_partition_name(mid))
            cur.execute(sql.SQL("ALTER TABLE similarity.{} RENAME TO {}").format(
                sql.Identifier(_stage_name(mid)), part))
            cur.execute(sql.SQL("ALTER INDEX similarity.{} RENAME TO {}").format(
                sql.Identifier(f"{_stage_name(mid)}_key"),
                sql.Identifier(f"{_partition_name(mid)}_key")))
            cur.execute(sql.SQL("ALTER TABLE similarity.neighbour_sets ATTACH "
                                "PARTITION similarity.{} FOR VALUES IN ({})").format(
                part, sql.Literal(int(mid))))

    return _in_one_transaction(conn, swap, lock_timeout_s, "swap in the neighbours")


def update_partition(conn, model_id: int, image_ids: np.ndarray, neighbour_ids: np.ndarray,
                     dists: np.ndarray, outlier: np.ndarray | None, rows: np.ndarray,
                     removed: np.ndarray, *, id_offset: int = 0, vector_file=None,
                     block_rows: int = 2000, lock_timeout_s: float = 5.0) -> float:
    """Replace some rows of a published model's partition, in one transaction.

    What ``update`` changed (:class:`~vo_similarity.neighbours.store.NeighbourChanges`):
    the rows of ``rows`` and of ``removed`` are deleted, those of ``rows``
    inserted anew (binary COPY into the partition); every other row is left
    as it is, not rewritten.  Readers see the old rows or the new ones: the
    transaction's snapshot, no lock that waits for them.  The model's vector
    file changes in the same transaction.

    Args:
        conn: a psycopg 3 connection as ``gavoadmin`` (not in a transaction).
        model_id: the model, whose partition exists.
        image_ids, neighbour_ids, dists, outlier: the model's full arrays (as
            for :func:`stage_model`; may be memory-mapped).
        rows: ids (of ``image_ids``, before ``id_offset``) whose rows go in.
        removed: ids whose rows go out.
        id_offset: the collection's (:mod:`.collections`).
        vector_file: the model's new vector file (:class:`.vectors.StagedVectors`),
            or None (its embeddings are not published).
        block_rows: rows encoded per COPY write.
        lock_timeout_s: how long to wait for a lock before retrying.

    Returns:
        Seconds the transaction took.
    """
    from psycopg import sql

    model_id = int(model_id)
    part = sql.Identifier(_partition_name(model_id))
    order = np.argsort(image_ids, kind="stable")
    where = order[np.searchsorted(np.asarray(image_ids)[order], rows)] if len(rows) else \
        np.zeros(0, np.int64)
    if len(rows) and not np.array_equal(np.asarray(image_ids)[where], rows):
        raise ValueError(f"model {model_id}: some changed rows are not among its images")
    gone = _shifted(np.union1d(rows, removed), id_offset).astype(np.int64).tolist()
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)

    def update(cur) -> None:
        _lock_model(cur, model_id)
        cur.execute(sql.SQL("DELETE FROM similarity.{} WHERE image_id = ANY(%s)")
                    .format(part), (gone,))
        _copy_rows(cur, part, model_id, (image_ids, neighbour_ids, dists, outlier),
                   where, block_rows, id_offset)
        if pause:
            log.warning("pausing %.1f s before the commit (%s is set)", pause, PAUSE_ENV)
            time.sleep(pause)
        _point_vector_files(cur, [model_id], [vector_file])

    return _in_one_transaction(conn, update, lock_timeout_s, f"update model {model_id}")


def load_model_partition(conn, model_id: int, image_ids: np.ndarray,
                         neighbour_ids: np.ndarray, dists: np.ndarray,
                         outlier: np.ndarray | None = None, **kwargs) -> float:
    """Stage one model and swap it in (:func:`stage_model`, :func:`swap_in`).

    Returns:
        Seconds the swap held its locks.
    """
    lock_timeout_s = kwargs.pop("lock_timeout_s", 5.0)
    stage_model(conn, model_id, image_ids, neighbour_ids, dists, outlier, **kwargs)
    return swap_in(conn, [model_id], lock_timeout_s=lock_timeout_s)
