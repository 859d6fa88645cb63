"""The ADQL the client sends: one builder per query, literals escaped.

Every builder returns a statement that runs as it is in TOPCAT, STILTS or pyvo
(what ``get_query_payload=True`` hands back).  Values reach the text only as
escaped string literals (:func:`adql_string`), numbers formatted from Python
numbers, or identifiers checked by :func:`table_name`; lists of ids never go
into the text at all but travel as TAP uploads (``TAP_UPLOAD.<name>``).

ADQL details that bite: ``distance`` is a reserved word (the column is
``dist``); ADQL 2.0 wants ``ORDER BY rank``, not ``ORDER BY n.rank``. The
query of ``similarity.similar`` has no ``rank <= n`` beside ``TOP n``: DaCHS's
ADQL parser spends more on each comparison (~4-8 ms) than PostgreSQL then
needs to sort an image's k neighbours itself (~3 ms at k = 1000;
docs/publish.md).
"""

from __future__ import annotations

import re

import numpy as np
from astropy.table import Table
from astroquery.exceptions import InvalidQueryError

# The one escaping function of the project; that module imports nothing heavy.
from vo_similarity.publish.queries import adql_string

__all__ = [
    "adql_string",
    "hits_query",
    "id_check_query",
    "join_query",
    "model_query",
    "outliers_query",
    "positions_upload",
    "region_query",
    "region_similar_query",
    "similar_query",
    "table_name",
    "target_lookup_query",
    "where_id",
]

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*){0,2}")


def table_name(name: str) -> str:
    """Check that ``name`` is a plain (schema-qualified) ADQL table name.

    Raises:
        InvalidQueryError: anything else (quotes, spaces, operators...).
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidQueryError(f"not a table name: {name!r} (expected e.g. 'ivoa.obscore')")
    return name


def _deg(value: float) -> str:
    """A number of degrees as ADQL text (repr keeps every digit of the float)."""
    return repr(float(value))


def where_id(image_id: str, *, did: str = "obs_publisher_did", obs_id: str = "obs_id") -> str:
    """The condition that picks an image by DID (``ivo://...``) or else by ``obs_id``.

    One column rather than ``did = x OR obs_id = x``: the DID is indexed and an
    ``OR`` would keep the database from using the index.
    """
    column = did if image_id.startswith("ivo://") else obs_id
    return f"{column} = {adql_string(image_id)}"


def model_query() -> str:
    """Every published model (read once per server and cached by the client)."""
    return "SELECT * FROM similarity.models ORDER BY model_id"


def similar_query(image_id: str, model_id: int | None, n: int,
                  exclude_radius_deg: float | None = None) -> str:
    """The ``n`` images most similar to ``image_id`` in rank order
    (``similarity.similar_by_model``: the model named, and every column).

    Args:
        image_id: ``obs_publisher_did`` (``ivo://...``) or ``obs_id`` of the query image.
        model_id: ``similarity.models.model_id``; None for the default model
            of the image's own collection (its lowest ``model_id``, as
            ``similarity.similar`` has it), chosen by the server: a subquery.
        n: rows wanted.
        exclude_radius_deg: leave out neighbours whose centre lies within this
            many degrees of the query image's (same target); neighbours or
            query images without a position are kept.
    """
    if model_id is None:
        model = ("model_id IN (SELECT MIN(m.model_id) FROM similarity.models AS m\n"
                 "  JOIN similarity.images AS i ON i.collection = m.collection\n"
                 f"  WHERE i.{where_id(image_id)})")
    else:
        model = f"model_id = {int(model_id)}"
    where = [where_id(image_id, did="query_did", obs_id="query_obs_id"), model]
    if exclude_radius_deg is not None:
        where.append(
            "(s_ra IS NULL OR query_ra IS NULL OR DISTANCE(POINT('ICRS', s_ra, s_dec), "
            f"POINT('ICRS', query_ra, query_dec)) > {_deg(exclude_radius_deg)})")
    return (f"SELECT TOP {int(n)} * FROM similarity.similar_by_model\n"
            f"WHERE {' AND '.join(where)}\nORDER BY rank")


def id_check_query(image_id: str) -> str:
    """Whether ``image_id`` names a published image (after an empty answer)."""
    return (f"SELECT TOP 1 obs_publisher_did, obs_id FROM similarity.images "
            f"WHERE {where_id(image_id)}")


def hits_query(upload: str = "hits") -> str:
    """ObsCore columns of uploaded search results, in their rank order.

    The upload has the columns ``rank``, ``obs_publisher_did``, ``score``,
    ``dist`` (one row per result of the search service).
    """
    return (f"SELECT h.rank, h.score, h.dist, o.*\nFROM TAP_UPLOAD.{upload} AS h\n"
            "JOIN ivoa.obscore AS o ON o.obs_publisher_did = h.obs_publisher_did\n"
            "ORDER BY rank")


def _cone(ra: str, dec: str, ra0: float, dec0: float, radius_deg: float) -> str:
    return (f"1 = CONTAINS(POINT('ICRS', {ra}, {dec}), "
            f"CIRCLE('ICRS', {_deg(ra0)}, {_deg(dec0)}, {_deg(radius_deg)}))")


def _sep(ra: str, dec: str, ra0: float, dec0: float) -> str:
    return f"DISTANCE(POINT('ICRS', {ra}, {dec}), POINT('ICRS', {_deg(ra0)}, {_deg(dec0)}))"


def region_query(ra: float, dec: float, radius_deg: float, top: int,
                 collections: list[str]) -> str:
    """The published images whose centre lies in a cone, nearest the centre first.

    ``ang_sep`` is each image's distance from the cone's centre in degrees;
    ``collections`` are the ``obs_collection`` values of the images wanted
    (``ivoa.obscore`` may hold other data of the server too).
    """
    if not collections:
        raise InvalidQueryError("no collection to search: the server publishes none")
    wanted = ", ".join(adql_string(c) for c in collections)
    where = (f"o.obs_collection = {adql_string(collections[0])}" if len(collections) == 1
             else f"o.obs_collection IN ({wanted})")
    return (f"SELECT TOP {int(top)} {_sep('o.s_ra', 'o.s_dec', ra, dec)} AS ang_sep, o.*\n"
            "FROM ivoa.obscore AS o\n"
            f"WHERE {where}\n"
            f"  AND {_cone('o.s_ra', 'o.s_dec', ra, dec, radius_deg)}\n"
            "ORDER BY ang_sep, obs_publisher_did")


def region_similar_query(ra: float, dec: float, radius_deg: float, model_id: int | None,
                         neighbours: int, top: int) -> str:
    """Each image in a cone with its ``neighbours`` nearest: one row per (image, rank).

    The rows are ``similarity.similar_by_model``'s (``query_*`` columns: the
    image in the cone; the others: its neighbour), the images nearest the
    centre first (``ang_sep``, degrees), then by rank.  ``model_id`` None:
    each image's neighbours by the default model of its own collection (the
    collection's lowest ``model_id``).
    """
    model = (f"s.model_id = {int(model_id)}" if model_id is not None else
             "s.model_id IN (SELECT MIN(m.model_id) FROM similarity.models AS m\n"
             "  GROUP BY m.collection)")
    return (f"SELECT TOP {int(top)} {_sep('s.query_ra', 's.query_dec', ra, dec)} AS ang_sep, s.*\n"
            "FROM similarity.similar_by_model AS s\n"
            f"WHERE {model} AND s.rank <= {int(neighbours)}\n"
            f"  AND {_cone('s.query_ra', 's.query_dec', ra, dec, radius_deg)}\n"
            "ORDER BY ang_sep, query_did, rank")


def target_lookup_query(name: str) -> str:
    """Candidate images whose ``target_name`` matches ``name`` ignoring case and spaces.

    The pattern puts ``%`` between the name's characters (``m1`` -> ``m%1``),
    so it also finds ``M 1``; it finds more than that (``M 11``), and the
    client keeps only exact matches after normalising both.  ``%`` and ``_``
    in the name only widen the candidates for the same reason.
    """
    pattern = "%".join(c for c in name.lower() if not c.isspace())
    return ("SELECT target_name, s_ra, s_dec FROM similarity.images\n"
            f"WHERE LOWER(target_name) LIKE {adql_string(pattern)}")


def outliers_query(model_id: int, n: int) -> str:
    """The ``n`` images with the largest outlier score, with their ObsCore columns."""
    return (f"SELECT TOP {int(n)} s.outlier, o.*\nFROM similarity.outliers AS s\n"
            "JOIN ivoa.obscore AS o ON o.obs_publisher_did = s.obs_publisher_did\n"
            f"WHERE s.model_id = {int(model_id)} AND s.outlier IS NOT NULL\n"
            "ORDER BY outlier DESC, obs_publisher_did")


def join_query(obscore_table: str, radius_deg: float, upload: str = "mine") -> str:
    """Another archive's observations within ``radius_deg`` of uploaded positions.

    The upload has the columns ``our_row`` (row of the client's table),
    ``our_did``, ``our_ra``, ``our_dec``; one result row per (uploaded
    position, observation there), ``ang_sep`` in degrees.
    """
    table = table_name(obscore_table)
    return (f"SELECT m.our_row, m.our_did, DISTANCE(POINT('ICRS', o.s_ra, o.s_dec), "
            "POINT('ICRS', m.our_ra, m.our_dec)) AS ang_sep, o.*\n"
            f"FROM TAP_UPLOAD.{upload} AS m\nJOIN {table} AS o\n"
            "  ON 1 = CONTAINS(POINT('ICRS', o.s_ra, o.s_dec), "
            f"CIRCLE('ICRS', m.our_ra, m.our_dec, {_deg(radius_deg)}))\n"
            "ORDER BY our_row, ang_sep, obs_publisher_did")


def positions_upload(table: Table) -> Table:
    """The upload of :func:`join_query`: ``our_row``, ``our_did``, ``our_ra``, ``our_dec``.

    One row per row of ``table`` with a position (``s_ra``, ``s_dec``).
    """
    if not isinstance(table, Table) or not {"s_ra", "s_dec"} <= set(table.colnames):
        raise InvalidQueryError("table must be an astropy Table with s_ra and s_dec columns "
                                "(a result of this client)")
    ra = np.ma.filled(np.ma.asarray(table["s_ra"], dtype=float), np.nan)
    dec = np.ma.filled(np.ma.asarray(table["s_dec"], dtype=float), np.nan)
    keep = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    if not len(keep):
        raise InvalidQueryError("no row of the table has a position (s_ra, s_dec)")
    dids = (np.ma.filled(table["obs_publisher_did"].astype(str), "")
            if "obs_publisher_did" in table.colnames else np.full(len(table), ""))
    return Table({"our_row": keep.astype(np.int32), "our_did": np.asarray(dids)[keep],
                  "our_ra": ra[keep], "our_dec": dec[keep]})
