"""The web page's requests: one parameterised SQL statement each, answered as dicts.

Reads, and the one write (:func:`record_selections`).  One module of ~500 lines
rather than several: DaCHS loads a resdir's modules one by one, by path, so
modules that import each other would need a loader of their own in both
places; the requests share the parameter checks and the image rows here.

Runs inside DaCHS (``res/web_queries.py``, loaded by ``res/web_page.py``) and in
the package's tests, so it imports nothing but numpy and the standard library; the vector
search kernel (:mod:`vo_similarity.publish.search_kernel`) is handed in by the
caller.  Every function takes a DB-API cursor (psycopg2 in DaCHS, psycopg 3 in
the tests: both take ``%(name)s`` parameters) and binds every value; nothing
the browser sends becomes SQL text.

Failures the user can fix raise :class:`WebError` with an HTTP status and a
message that says what to change.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from urllib.parse import urlencode

import numpy as np

__all__ = ["IMAGE_COLUMNS", "LIMITS", "RawJSON", "WebError", "config", "image", "lookup_position",
           "lookup_target", "neighbours", "outliers", "random_image", "record_selections",
           "refine", "resolve_ids"]

#: Caps on one request.
LIMITS = {"page_size_max": 100, "matches": 50, "record_max": 100, "chosen_max": 200,
          "text_max": 400,
          # refine ranks all embeddings up to this many (~25 ms at D = 256 on one
          # core), above it the chosen images' neighbour lists (benchmarks/RESULTS.md)
          "exact_max": 250_000}

#: Columns of similarity.images behind each image object, in this order.
IMAGE_COLUMNS = ("image_id", "obs_publisher_did", "obs_id", "target_name", "s_ra", "s_dec",
                 "s_fov", "credit", "category", "mime", "accref")
_SELECT_IMAGE = ", ".join(f"i.{c}" for c in IMAGE_COLUMNS)
_SESSION = re.compile(r"[A-Za-z0-9_-]{8,64}")


class WebError(ValueError):
    """A request the page's service refuses: HTTP ``status`` and a message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# -- parameters --------------------------------------------------------------------

def _text(args: dict, name: str, default: str | None = None) -> str | None:
    values = args.get(name) or []
    if len(values) > 1:
        raise WebError(f"give {name} once, not {len(values)} times")
    if not values:
        return default
    value = values[0].strip()
    if len(value) > LIMITS["text_max"]:
        raise WebError(f"{name} is too long ({len(value)} characters, at most "
                       f"{LIMITS['text_max']})")
    return value if value else default


def _required(args: dict, name: str) -> str:
    value = _text(args, name)
    if value is None:
        raise WebError(f"{name} is required")
    return value


def _integer(args: dict, name: str, default: int | None, lo: int, hi: int) -> int:
    text = _text(args, name)
    if text is None:
        if default is None:
            raise WebError(f"{name} is required")
        return default
    try:
        value = int(text)
    except ValueError:
        raise WebError(f"{name} must be a whole number, got {text[:40]!r}") from None
    if not lo <= value <= hi:
        raise WebError(f"{name} must be from {lo} to {hi}, got {value}")
    return value


def _degrees(args: dict, name: str, default: float | None, lo: float, hi: float) -> float | None:
    text = _text(args, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise WebError(f"{name} must be a number of degrees, got {text[:40]!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise WebError(f"{name} must be from {lo} to {hi} degrees, got {text[:40]}")
    return value


def _many(args: dict, name: str) -> list[str]:
    values = [v.strip() for v in args.get(name) or [] if v.strip()]
    if len(values) > LIMITS["chosen_max"]:
        raise WebError(f"at most {LIMITS['chosen_max']} values of {name}, got {len(values)}")
    if any(len(v) > LIMITS["text_max"] for v in values):
        raise WebError(f"a value of {name} is too long (at most {LIMITS['text_max']} "
                       "characters)")
    return values


def _page(args: dict) -> tuple[int, int]:
    return (_integer(args, "offset", 0, 0, 100000),
            _integer(args, "n", 50, 1, LIMITS["page_size_max"]))


# -- rows --------------------------------------------------------------------------

def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _image(row, base_url: str, *, record: bool = True) -> dict:
    """An image object (docs/web.md) from a row of IMAGE_COLUMNS; ``record``: with
    the URL of its ObsCore record (left out of neighbour lists, to keep the fast
    path's replies small)."""
    rec = dict(zip(IMAGE_COLUMNS, row))
    # accrefs are publish's own file names (<resdir>/data/images/<image_id>.<ext>):
    # nothing to quote, so _row_json builds the same URL in SQL
    product = f"{base_url}/getproduct/{rec.pop('accref')}"
    rec.update(access_url=product, access_format=rec.pop("mime"),
               preview=product + "?preview=True")
    if record:
        adql = ("SELECT * FROM ivoa.obscore WHERE obs_publisher_did = '"
                + rec["obs_publisher_did"].replace("'", "''") + "'")
        rec["record_url"] = f"{base_url}/tap/sync?" + urlencode(
            {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql})
    for key in ("s_ra", "s_dec", "s_fov"):
        rec[key] = _finite(rec[key])
    return rec


def _model(cursor, model_id: int) -> dict:
    cursor.execute("SELECT m.model_id, m.name, m.k, m.n_images, v.file "
                   "FROM similarity.models AS m LEFT JOIN similarity.vector_files AS v "
                   "ON v.model_id = m.model_id WHERE m.model_id = %(m)s", {"m": model_id})
    row = cursor.fetchone()
    if row is None:
        cursor.execute("SELECT model_id FROM similarity.models ORDER BY model_id")
        known = ", ".join(str(r[0]) for r in cursor.fetchall()) or "none"
        raise WebError(f"unknown model {model_id}; published models: {known}", 404)
    return dict(zip(("model_id", "name", "k", "n_images", "vector_file"), row))


#: the collection of model %(m)s (an obs_id names an image inside a collection)
_MODEL_COLLECTION = "(SELECT collection FROM similarity.models WHERE model_id = %(m)s)"


def resolve_ids(cursor, names: list[str], model_id: int | None = None) -> dict[str, int]:
    """obs_publisher_did or obs_id -> image_id, for every name (404 if one is unknown).

    DIDs are looked up first (they have an index); obs_id only for the rest,
    inside the collection of ``model_id`` where given.
    """
    found: dict[str, int] = {}
    if names:
        cursor.execute("SELECT obs_publisher_did, image_id FROM similarity.images "
                       "WHERE obs_publisher_did = ANY(%(n)s)", {"n": list(set(names))})
        found.update(cursor.fetchall())
    rest = [n for n in set(names) if n not in found]
    if rest:
        scope = "" if model_id is None else f" AND collection = {_MODEL_COLLECTION}"
        cursor.execute("SELECT obs_id, min(image_id) FROM similarity.images "
                       f"WHERE obs_id = ANY(%(n)s){scope} GROUP BY obs_id",
                       {"n": rest, "m": model_id})
        found.update(cursor.fetchall())
    unknown = [n for n in names if n not in found]
    if unknown:
        shown = ", ".join(repr(u[:80]) for u in unknown[:3])
        raise WebError(f"no published image has the id {shown}"
                       f"{' (and more)' if len(unknown) > 3 else ''}: give an "
                       "obs_publisher_did or obs_id", 404)
    return found


@functools.lru_cache(maxsize=16)
def _prepared_form(sql: str) -> tuple[str, str, str]:
    """(name, PREPARE body with $n, EXECUTE call with %(name)s) of ``sql``."""
    names: list[str] = []

    def number(match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = re.sub(r"%\((\w+)\)s", number, sql)
    name = "vosim_" + hashlib.sha1(body.encode("utf-8")).hexdigest()[:16]
    return name, body, f"EXECUTE {name} ({', '.join(f'%({n})s' for n in names)})"


def _execute_prepared(cursor, sql: str, params: dict) -> None:
    """Run ``sql`` (``%(name)s`` parameters) as a prepared statement of the
    cursor's connection, preparing it on first use there.

    For the fast path: planning its statement costs about as much as running
    it.  The statement's name is a digest of its text, so each variant is
    prepared once per pooled connection.  psycopg 3 prepares repeated
    statements by itself (and binds parameters on the server, where an
    ``EXECUTE``'s arguments have no type), so there it is run as it is; this is
    for DaCHS's psycopg2.
    """
    if not type(cursor).__module__.startswith("psycopg2"):
        cursor.execute(sql, params)
        return
    from psycopg2.errors import InvalidSqlStatementName  # DaCHS's Python has it

    name, body, call = _prepared_form(sql)
    try:
        cursor.execute(call, params)
    except InvalidSqlStatementName:  # not prepared on this connection yet
        cursor.execute(f"PREPARE {name} AS {body}")
        cursor.execute(call, params)


def _image_row(cursor, image_id: int):
    cursor.execute(f"SELECT {_SELECT_IMAGE} FROM similarity.images AS i "
                   "WHERE i.image_id = %(i)s", {"i": image_id})
    return cursor.fetchone()


# -- the requests ------------------------------------------------------------------

def config(cursor, args: dict, base_url: str) -> dict:
    """The published models and what the page needs to know of the service."""
    cursor.execute("SELECT m.model_id, m.name, m.category, m.n_images, m.k, "
                   "v.file IS NOT NULL, m.collection FROM similarity.models AS m "
                   "LEFT JOIN similarity.vector_files AS v ON v.model_id = m.model_id "
                   "ORDER BY m.model_id")
    models = [dict(zip(("model_id", "name", "category", "n_images", "k", "searchable",
                        "collection"), r))
              for r in cursor.fetchall()]
    return {"tap_url": f"{base_url}/tap", "models": models,
            "default_model": models[0]["model_id"] if models else None,
            "limits": {"page_size_max": LIMITS["page_size_max"],
                       "record_max": LIMITS["record_max"]}}


def image(cursor, args: dict, base_url: str) -> dict:
    """One image by obs_publisher_did or obs_id (``id``)."""
    name = _required(args, "id")
    image_id = resolve_ids(cursor, [name])[name]
    return {"image": _image(_image_row(cursor, image_id), base_url)}


def random_image(cursor, args: dict, base_url: str) -> dict:
    """A random image that has neighbours under ``model``."""
    model = _model(cursor, _integer(args, "model", None, 1, 32767))
    cursor.execute("SELECT image_id FROM similarity.neighbour_sets WHERE model_id = %(m)s "
                   "OFFSET floor(random() * %(n)s) LIMIT 1",
                   {"m": model["model_id"], "n": model["n_images"]})
    row = cursor.fetchone()
    if row is None:
        raise WebError(f"model {model['model_id']} has no images", 404)
    return {"image": _image(_image_row(cursor, row[0]), base_url)}


def _in_collection(args: dict) -> tuple[str, int | None]:
    """The condition that keeps the images of ``model``'s collection (where given)."""
    if _text(args, "model") is None:
        return "", None
    return f" AND i.collection = {_MODEL_COLLECTION}", _integer(args, "model", None, 1, 32767)


def lookup_target(cursor, args: dict, base_url: str) -> dict:
    """Images whose target name contains ``target`` (case and blanks ignored),
    exact matches first; of ``model``'s collection where given."""
    wanted = re.sub(r"\s+", "", _required(args, "target").lower())
    if not wanted:
        raise WebError("target is empty")
    scope, model_id = _in_collection(args)
    # strpos, not LIKE: the user's text stays a plain string (no wildcards).
    cursor.execute(
        f"SELECT {_SELECT_IMAGE}, name = %(w)s AS exact FROM similarity.images AS i "
        "CROSS JOIN LATERAL (SELECT regexp_replace(lower(i.target_name), '\\s+', '', 'g') "
        f"AS name) AS t WHERE strpos(name, %(w)s) > 0{scope} "
        "ORDER BY exact DESC, length(name), i.image_id LIMIT %(lim)s",
        {"w": wanted, "lim": LIMITS["matches"], "m": model_id})
    return {"images": [_image(r[:-1], base_url) for r in cursor.fetchall()]}


def lookup_position(cursor, args: dict, base_url: str) -> dict:
    """Images whose centre lies within ``radius`` degrees of (``ra``, ``dec``); of
    ``model``'s collection where given."""
    ra = _degrees(args, "ra", None, -360, 360)
    dec = _degrees(args, "dec", None, -90, 90)
    if ra is None or dec is None:
        raise WebError("give both ra and dec (degrees)")
    radius = _degrees(args, "radius", 1.0, 0, 180)
    scope, model_id = _in_collection(args)
    cursor.execute(
        f"SELECT {_SELECT_IMAGE}, q3c_dist(i.s_ra, i.s_dec, %(ra)s, %(dec)s) AS sep "
        "FROM similarity.images AS i "
        f"WHERE q3c_radial_query(i.s_ra, i.s_dec, %(ra)s, %(dec)s, %(r)s){scope} "
        "ORDER BY sep, i.image_id LIMIT %(lim)s",
        {"ra": ra % 360, "dec": dec, "r": radius, "lim": LIMITS["matches"], "m": model_id})
    return {"images": [dict(_image(r[:-1], base_url), sep=r[-1])
                       for r in cursor.fetchall()]}


class RawJSON(str):
    """A reply already serialised as JSON (the page's server sends it as it is)."""


def _finite_sql(column: str) -> str:
    # json_build_object writes NaN and Infinity as such, which is not JSON
    return f"CASE WHEN {column} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE {column} END"


def _row_json(alias: str) -> str:
    """SQL building a result row's JSON (:func:`_image` without record_url, plus
    rank and dist) from image columns of ``alias`` and ``rank``, ``dist``."""
    fields = [f"'{c}', {alias}.{c}" for c in ("image_id", "obs_publisher_did", "obs_id",
                                              "target_name")]
    fields += [f"'{c}', {_finite_sql(f'{alias}.{c}')}" for c in ("s_ra", "s_dec", "s_fov")]
    fields += [f"'{c}', {alias}.{c}" for c in ("credit", "category")]
    # the URLs as _image makes them
    fields += [f"'access_url', %(product)s || {alias}.accref",
               f"'access_format', {alias}.mime",
               f"'preview', %(product)s || {alias}.accref || '?preview=True'",
               f"'rank', {alias}.rank", f"'dist', {_finite_sql(f'{alias}.dist')}"]
    return f"json_build_object({', '.join(fields)})"


def neighbours(cursor, args: dict, base_url: str) -> RawJSON:
    """Ranks offset+1 .. offset+n of an image's precomputed neighbours (the fast
    path: no ADQL), optionally leaving out those within ``exclude_radius`` degrees
    of the query's centre.

    One SQL statement, one round trip to the database: the query image (found by
    DID, else by obs_id), the length of its list and the page's rows, which
    PostgreSQL writes as JSON (the per-row cost in Python would be most of the
    request's: benchmarks/RESULTS.md).
    """
    name = _required(args, "id")
    model_id = _integer(args, "model", None, 1, 32767)
    offset, n = _page(args)
    radius = _degrees(args, "exclude_radius", None, 0, 180)
    nb_columns = _SELECT_IMAGE.replace("i.", "nb.")
    if radius is None:  # a slice of the arrays: only the page's images are read
        page = (f"SELECT u.rank + %(off)s AS rank, u.dist, {nb_columns}, NULL::bigint AS total "
                "FROM s CROSS JOIN LATERAL unnest("
                "s.neighbour_ids[%(off)s + 1:%(off)s + %(n)s], "
                "s.dists[%(off)s + 1:%(off)s + %(n)s]) "
                "WITH ORDINALITY AS u(neighbour_id, dist, rank) "
                "JOIN similarity.images AS nb ON nb.image_id = u.neighbour_id")
    else:
        page = (f"SELECT u.rank, u.dist, {nb_columns}, count(*) OVER () AS total FROM s "
                "CROSS JOIN LATERAL unnest(s.neighbour_ids, s.dists) "
                "WITH ORDINALITY AS u(neighbour_id, dist, rank) "
                "JOIN similarity.images AS nb ON nb.image_id = u.neighbour_id CROSS JOIN q "
                "WHERE NOT COALESCE(q3c_join(q.s_ra, q.s_dec, nb.s_ra, nb.s_dec, %(r)s), "
                "false) ORDER BY u.rank OFFSET %(off)s LIMIT %(n)s")
    _execute_prepared(
        cursor,
        f"WITH q AS (SELECT * FROM ("
        f"(SELECT 0 AS pref, {_SELECT_IMAGE} FROM similarity.images AS i "
        "WHERE i.obs_publisher_did = %(id)s) UNION ALL "
        f"(SELECT 1, {_SELECT_IMAGE} FROM similarity.images AS i WHERE i.obs_id = %(id)s "
        f"AND i.collection = {_MODEL_COLLECTION} "
        "ORDER BY i.image_id LIMIT 1)) AS found ORDER BY pref LIMIT 1), "
        "s AS (SELECT s.neighbour_ids, s.dists FROM similarity.neighbour_sets AS s "
        "JOIN q ON s.image_id = q.image_id WHERE s.model_id = %(m)s), "
        f"p AS ({page}) "
        f"SELECT {', '.join(f'q.{c}' for c in IMAGE_COLUMNS)}, "
        "(SELECT cardinality(neighbour_ids) FROM s), (SELECT max(total) FROM p), "
        f"(SELECT COALESCE(json_agg({_row_json('p')} ORDER BY p.rank), '[]')::text FROM p) "
        "FROM q",
        {"id": name, "m": model_id, "off": offset, "n": n, "r": radius,
         "product": f"{base_url}/getproduct/"})
    row = cursor.fetchone()
    if row is None:
        resolve_ids(cursor, [name], model_id)  # raises the 404 that names the id
    head, k, window_total, results = row[:len(IMAGE_COLUMNS)], row[-3], row[-2], row[-1]
    if k is None:
        model = _model(cursor, model_id)  # 404 for an unknown model
        raise WebError(f"{name[:80]!r} has no neighbours under model "
                       f"{model['model_id']} ({model['name']})", 404)
    if radius is None:
        total = k
    elif window_total is not None:
        total = window_total
    else:  # the page lies beyond the last neighbour left
        total = _excluded_total(cursor, model_id, head[0], radius)
    reply = {"query": _image(head, base_url), "model_id": model_id, "k": int(k),
             "total": int(total), "offset": offset}
    return RawJSON(json.dumps(reply, allow_nan=False)[:-1] + f',"results":{results}}}')


def _excluded_total(cursor, model_id: int, image_id: int, radius: float) -> int:
    cursor.execute(
        "SELECT count(*) FROM similarity.neighbour_sets AS s "
        "CROSS JOIN LATERAL unnest(s.neighbour_ids) AS u(neighbour_id) "
        "JOIN similarity.images AS nb ON nb.image_id = u.neighbour_id "
        "JOIN similarity.images AS q ON q.image_id = s.image_id "
        "WHERE s.model_id = %(m)s AND s.image_id = %(i)s "
        "AND NOT COALESCE(q3c_join(q.s_ra, q.s_dec, nb.s_ra, nb.s_dec, %(r)s), false)",
        {"m": model_id, "i": image_id, "r": radius})
    return int(cursor.fetchone()[0])


def outliers(cursor, args: dict, base_url: str) -> dict:
    """The images with the largest outlier score under ``model``."""
    model = _model(cursor, _integer(args, "model", None, 1, 32767))
    offset, n = _page(args)
    cursor.execute(
        f"SELECT s.outlier, {_SELECT_IMAGE}, count(*) OVER () "
        "FROM similarity.neighbour_sets AS s "
        "JOIN similarity.images AS i ON i.image_id = s.image_id "
        "WHERE s.model_id = %(m)s AND s.outlier IS NOT NULL AND s.outlier <> 'NaN' "
        "ORDER BY s.outlier DESC, s.image_id OFFSET %(off)s LIMIT %(n)s",
        {"m": model["model_id"], "off": offset, "n": n})
    fetched = cursor.fetchall()
    results = [dict(_image(r[1:-1], base_url, record=False), rank=offset + j + 1,
                        outlier=float(r[0]))
               for j, r in enumerate(fetched)]
    return {"model_id": model["model_id"], "total": int(fetched[0][-1]) if fetched else 0,
            "offset": offset, "results": results}


def _chosen(cursor, args: dict) -> tuple[list[str], list[str], dict[str, int]]:
    similar, not_similar = _many(args, "similar"), _many(args, "not_similar")
    both = set(similar) & set(not_similar)
    if both:
        raise WebError(f"{min(both)[:80]!r} is marked both similar and not similar")
    return similar, not_similar, resolve_ids(cursor, similar + not_similar,
                                             _integer(args, "model", None, 1, 32767))


def refine(cursor, args: dict, base_url: str, kernel, vector_root: str) -> dict:
    """Images like those marked ``similar`` and unlike those marked ``not_similar``.

    The query is Rocchio's (Rocchio 1971; :func:`search_kernel.build_query`): the
    mean of the similar embeddings minus ``beta`` (0.5) times the mean of the
    rejected ones.  ``method=exact`` ranks all the model's embeddings
    (:meth:`search_kernel.VectorFile.top_n`); ``method=candidates`` ranks only the union of
    the similar images' precomputed neighbour lists, which costs the same at any
    N; ``auto`` (default) is exact up to ``LIMITS["exact_max"]`` embeddings.
    ``query``, the image the user started from, counts as similar too.  The
    chosen images are never returned.
    """
    model = _model(cursor, _integer(args, "model", None, 1, 32767))
    method = _text(args, "method", "auto")
    if method not in ("auto", "candidates", "exact"):
        raise WebError(f"method must be auto, candidates or exact, got {method[:40]!r}")
    offset, n = _page(args)
    similar, not_similar, found = _chosen(cursor, args)
    if not similar:
        raise WebError("mark at least one image as similar to refine")
    query_name = _text(args, "query")
    if query_name is not None and query_name not in not_similar:
        # the image the user started from counts as one more similar image
        similar = similar + [query_name]
        found.update(resolve_ids(cursor, [query_name], model["model_id"]))
    if model["vector_file"] is None:
        raise WebError(f"model {model['model_id']} has no published embeddings, so it "
                       "cannot refine; choose another model")
    vf = kernel.open_vectors(os.path.join(vector_root, os.path.basename(model["vector_file"])))
    sim_ids = sorted({found[s] for s in similar})
    rej_ids = sorted({found[s] for s in not_similar})
    try:
        sim_rows, rej_rows = vf.rows_of(sim_ids), vf.rows_of(rej_ids)
    except KeyError:
        raise WebError(f"some chosen images have no embedding under model "
                       f"{model['model_id']} (another category?)") from None
    try:
        query = kernel.build_query(vf.dim, [], [], vf.vectors[sim_rows], vf.vectors[rej_rows],
                                   0.5)
    except kernel.SearchError as exc:
        raise WebError(str(exc)) from None
    chosen = set(sim_ids) | set(rej_ids)
    if method == "auto":
        method = "exact" if len(vf.ids) <= LIMITS["exact_max"] else "candidates"
    if method == "candidates":
        cursor.execute("SELECT DISTINCT unnest(neighbour_ids) FROM similarity.neighbour_sets "
                       "WHERE model_id = %(m)s AND image_id = ANY(%(i)s)",
                       {"m": model["model_id"], "i": sim_ids})
        cand = np.array(sorted(r[0] for r in cursor.fetchall() if r[0] not in chosen),
                        dtype=np.int64)
        scores = vf.vectors[vf.rows_of(cand)] @ query if len(cand) else np.empty(0, np.float32)
        order = np.lexsort((cand, -scores))
        total = len(cand)
        picked = [(int(cand[j]), float(scores[j])) for j in order[offset:offset + n]]
    else:
        exclude = np.concatenate([sim_rows, rej_rows])
        most = kernel.LIMITS["n"]  # as many results as the search service gives
        rows, scores = vf.top_n(query, min(offset + n, most), exclude)
        total = min(most, len(vf.ids) - len(exclude))
        picked = [(int(vf.ids[r]), float(s)) for r, s in
                  zip(rows[offset:offset + n], scores[offset:offset + n])]
    cursor.execute(f"SELECT {_SELECT_IMAGE} FROM similarity.images AS i "
                   "WHERE i.image_id = ANY(%(ids)s)", {"ids": [p[0] for p in picked]})
    meta = {r[0]: r for r in cursor.fetchall()}
    results = []
    for j, (image_id, score) in enumerate(picked):
        if image_id in meta:
            results.append(dict(_image(meta[image_id], base_url, record=False), rank=offset + j + 1,
                                score=score, dist=math.sqrt(max(0.0, 2.0 - 2.0 * score))))
    return {"model_id": model["model_id"], "method": method, "total": int(total),
            "offset": offset, "results": results}


def record_selections(cursor, args: dict) -> int:
    """Insert what a user marked (``query``, ``similar``, ``not_similar``, ``session``)
    into similarity.selections; returns the number of rows.  The caller commits."""
    model = _model(cursor, _integer(args, "model", None, 1, 32767))
    query = _required(args, "query")
    session = _required(args, "session")
    if not _SESSION.fullmatch(session):
        raise WebError("session must be 8 to 64 letters, digits, '_' or '-'")
    similar, not_similar = _many(args, "similar"), _many(args, "not_similar")
    if not similar and not not_similar:
        raise WebError("nothing to record: mark images similar or not similar first")
    if len(similar) + len(not_similar) > LIMITS["record_max"]:
        raise WebError(f"at most {LIMITS['record_max']} selections per request, got "
                       f"{len(similar) + len(not_similar)}")
    if len(set(similar + not_similar)) != len(similar) + len(not_similar):
        raise WebError("an image is named twice; mark each image once")
    found = resolve_ids(cursor, [query] + similar + not_similar, model["model_id"])
    query_id = found[query]
    marks = [(found[s], True) for s in similar] + [(found[s], False) for s in not_similar]
    if any(chosen == query_id for chosen, _ in marks):
        raise WebError("the query image cannot be marked; mark its neighbours")
    for chosen, is_similar in marks:
        # the page's only write right (sql/selections.sql)
        cursor.execute("SELECT similarity.add_selection(%(m)s::smallint, %(q)s, %(c)s, %(s)s, "
                       "%(sess)s)", {"m": model["model_id"], "q": query_id, "c": chosen,
                                     "s": is_similar, "sess": session})
    return len(marks)
