"""Server-side vector search: the code DaCHS's ``search`` service runs (docs/search-service.md).

This module runs in two places, so it imports nothing but numpy and the
standard library: in DaCHS's system Python (the RD ``similarity/q`` loads a
copy installed by ``vo-similarity publish`` as ``res/search_kernel.py``), and
in the package, where publishing writes the vector files it reads and the tests
call it directly.

Vector file (one per published model, written by
:func:`vo_similarity.publish.vectors.write_vector_file`): ``.npy`` records one
after the other, ``int32 [N]`` image ids in increasing order, then
``float32 [N, D]`` unit vectors, C order, row i belonging to image id i of the
first record; then, optionally, the same vectors coded for a fast first pass
(:class:`Coded`): ``uint8 [N, D]`` codes, ``float32 [D]`` scales and
``float32 [N]`` error bounds.  One file, so that everything is replaced together.

A request is answered by :func:`handle`: every input checked with a clear
message, the query vector built (Rocchio), the exact top n found by
:func:`top_n` (blocked matrix-vector products with a running threshold; with
codes, a first pass over the one-byte codes and an exact rescore of the rows its
error bound cannot rule out), and the reply as JSON bytes.  SQL goes through
bound parameters only.
"""

from __future__ import annotations

import json
import math
import os
import threading
from typing import NamedTuple

import numpy as np

__all__ = ["LIMITS", "Coded", "SearchError", "VectorFile", "build_query", "code_scales", "encode",
           "handle", "open_vectors", "parse_request", "read_vector_file", "read_vector_records", "top_n"]

#: Caps on a request: results, ids named, vectors sent.
LIMITS = {"n": 1000, "ids": 1000, "vectors": 64}
_BLOCK_ROWS = 16384  # 16 MiB of float32 at D = 256: the block stays in cache


class SearchError(ValueError):
    """A request the service refuses; the message says what to change."""


# -- the vector file -------------------------------------------------------------

def _read_npy_header(f) -> tuple[tuple[int, ...], np.dtype, int]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if fortran:
        raise ValueError("a vector file must be in C order")
    return shape, dtype, f.tell()


def _records(path: str) -> list[tuple[tuple[int, ...], np.dtype, int]]:
    """``(shape, dtype, offset)`` of every ``.npy`` record in the file, in order."""
    records = []
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        while f.tell() < size:
            shape, dtype, offset = _read_npy_header(f)
            records.append((shape, dtype, offset))
            f.seek(offset + int(np.prod(shape)) * dtype.itemsize)
    return records


class Coded(NamedTuple):
    """The vectors coded for the first pass of :func:`top_n` (one byte a value).

    Row i is approximated by ``x̂ᵢ = scales * (codes[i] - 128)`` (one scale per
    dimension), and ``errors[i] >= ||vectors[i] - x̂ᵢ||`` (computed in float64
    and rounded up when written), so that by Cauchy-Schwarz the approximate
    score of a query q is off by at most ``|q| errors[i]`` plus float32 rounding.
    """

    codes: np.ndarray  # uint8 [N, D]
    scales: np.ndarray  # float32 [D]
    errors: np.ndarray  # float32 [N]


def code_scales(peak: np.ndarray) -> np.ndarray:
    """Per-dimension scales for :func:`encode` from the largest ``|x|`` of each dimension."""
    peak = np.asarray(peak, np.float32)
    return np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)


def encode(vectors: np.ndarray, scales: np.ndarray) -> Coded:
    """Code float32 vectors [M, D] with per-dimension ``scales`` (:func:`code_scales`
    of the largest ``|x|`` over all the vectors): ``rint(x / scales) + 128``."""
    x = np.asarray(vectors, np.float32)
    codes = np.clip(np.rint(x / scales), -127, 127).astype(np.int16) + 128
    residual = x.astype(np.float64) - scales.astype(np.float64) * (codes - 128)
    errors = np.linalg.norm(residual, axis=1).astype(np.float32)
    errors = np.nextafter(errors, np.float32(np.inf))
    return Coded(codes.astype(np.uint8), scales, errors)


def _map(path: str, record) -> np.ndarray:
    shape, dtype, offset = record
    # A plain ndarray over the map: slicing an np.memmap runs Python code
    # (__getitem__, __array_finalize__) for each of the ~1000 pieces of a search.
    return np.asarray(np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape))


def read_vector_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map a vector file: ``(ids int32 [N], vectors float32 [N, D])``."""
    ids, vectors, _ = read_vector_records(path)
    return ids, vectors


def read_vector_records(path: str) -> tuple[np.ndarray, np.ndarray, Coded | None]:
    """Memory-map a vector file: ids, vectors, and the codes where it has them."""
    records = _records(path)
    if len(records) not in (2, 5):
        raise ValueError(f"{path} is not a vector file ({len(records)} records)")
    (id_shape, id_dtype, _), (vec_shape, vec_dtype, _) = records[:2]
    if (id_dtype != np.int32 or vec_dtype != np.float32 or len(id_shape) != 1
            or len(vec_shape) != 2 or vec_shape[0] != id_shape[0]):
        raise ValueError(f"{path} is not a vector file (ids {id_dtype} {id_shape}, "
                         f"vectors {vec_dtype} {vec_shape})")
    coded = None
    if len(records) == 5:
        want = [(vec_shape, np.uint8), ((vec_shape[1],), np.float32), (id_shape, np.float32)]
        if [(r[0], r[1]) for r in records[2:]] != want:
            raise ValueError(f"{path}: its codes do not match its vectors")
        coded = Coded(*(_map(path, r) for r in records[2:]))
    return _map(path, records[0]), _map(path, records[1]), coded


class VectorFile:
    """One memory-mapped vector file and the identity of the file it maps."""

    def __init__(self, path: str):
        st = os.stat(path)
        self.path, self.key = path, (st.st_ino, st.st_mtime_ns, st.st_size)
        self.ids, self.vectors, self.coded = read_vector_records(path)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows_of(self, image_ids) -> np.ndarray:
        """Rows of ``image_ids`` (which must be in the file)."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        rows = np.searchsorted(self.ids, image_ids)
        rows = np.minimum(rows, len(self.ids) - 1)
        if len(rows) and not np.array_equal(self.ids[rows], image_ids):
            raise KeyError("not in the file")
        return rows

    def top_n(self, query: np.ndarray, n: int,
              exclude_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:func:`top_n` over this file, with its codes where it has them."""
        return top_n(self.vectors, query, n, exclude_rows, coded=self.coded)


_cache: dict[str, VectorFile] = {}
_cache_lock = threading.Lock()


def open_vectors(path: str) -> VectorFile:
    """The memory map of ``path``, kept between requests and renewed when the file
    is replaced (another inode, size or modification time)."""
    st = os.stat(path)
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _cache_lock:
        found = _cache.get(path)
        if found is None or found.key != key:
            found = _cache[path] = VectorFile(path)
            # Maps of files that have gone (older generations) are dropped.
            for other in [p for p in _cache if p != path and not os.path.exists(p)]:
                del _cache[other]
        return found


# -- the search --------------------------------------------------------------------

def top_n(vectors: np.ndarray, query: np.ndarray, n: int,
          exclude_rows: np.ndarray | None = None,
          block_rows: int = _BLOCK_ROWS,
          coded: Coded | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``n`` rows of ``vectors @ query``, best first.

    Blocked: each block's scores are compared with the n-th best score so far,
    and only the rows above it are kept, so that one pass over memory-mapped
    vectors needs memory for one block.  Ties are broken by row (lower first),
    so the answer does not depend on the block size.

    With ``coded``, the pass reads the one-byte codes (a quarter of the bytes)
    instead: each row's approximate score comes with a bound on its error, the rows
    whose upper bound reaches the n-th best lower bound are the only ones that
    can be in the top n, and only those are scored, in float64, from
    ``vectors``.  The answer is the same top n.

    Args:
        vectors: float32 [N, D].
        query: float32 [D].
        n: how many rows (fewer when N minus the excluded rows is smaller).
        exclude_rows: rows never returned.
        block_rows: rows per matrix-vector product.
        coded: the vectors' codes (:class:`Coded`), or None to scan the vectors.

    Returns:
        ``(rows int64 [m], scores float32 [m])`` in rank order, m = min(n, available).
    """
    query = np.ascontiguousarray(query, dtype=np.float32)
    excluded = np.unique(np.asarray(exclude_rows if exclude_rows is not None else [],
                                    dtype=np.int64))
    if coded is not None:
        return _top_n_coded(vectors, coded, query, n, excluded, block_rows)
    best_rows = np.empty(0, np.int64)
    best_scores = np.empty(0, np.float32)
    threshold = -np.inf
    for start in range(0, vectors.shape[0], block_rows):
        scores = vectors[start:start + block_rows] @ query
        lo, hi = np.searchsorted(excluded, [start, start + len(scores)])
        scores[excluded[lo:hi] - start] = -np.inf
        keep = np.flatnonzero(scores >= threshold) if len(best_rows) == n else \
            np.flatnonzero(scores > -np.inf)
        if not len(keep):
            continue
        rows = np.concatenate([best_rows, keep + start])
        cand = np.concatenate([best_scores, scores[keep]])
        if len(cand) > n:
            # argpartition would cut ties at the n-th score arbitrarily: keep
            # every row tied with it, and let the final sort decide by row.
            kth = np.partition(cand, len(cand) - n)[len(cand) - n]
            sel = np.flatnonzero(cand >= kth)
            rows, cand = rows[sel], cand[sel]
            if len(cand) > n:
                order = np.lexsort((rows, -cand))[:n]
                rows, cand = rows[order], cand[order]
        best_rows, best_scores = rows, cand
        if len(best_rows) == n:
            threshold = float(best_scores.min())
    order = np.lexsort((best_rows, -best_scores))
    return best_rows[order], best_scores[order]


_PIECE_BYTES = 1 << 20  # float32 rows converted at a time: 1 MiB, in L2 or close to it


def _first_pass(codes: np.ndarray, query: np.ndarray, out: np.ndarray,
                buffer: np.ndarray) -> np.ndarray:
    """``codes @ query`` in float32, a cache-sized piece at a time."""
    for start in range(0, len(codes), len(buffer)):
        piece = buffer[:min(len(buffer), len(codes) - start)]
        piece[...] = codes[start:start + len(piece)]
        np.dot(piece, query, out=out[start:start + len(piece)])
    return out


class _Bounds:
    """Approximate scores of one query and the bound on their error.

    ``approx = fl(codes @ q') - 128 Σq'`` with ``q' = q * scales`` equals
    ``x̂ᵢ · q`` up to float32 rounding: sums of D products in any order are
    within ``gamma_D Σ|codesᵢⱼ q'ⱼ| <= gamma_D 255 |q'|₁`` (Higham 2002, 3.1),
    and the subtraction adds a rounding of its operands' size.  With
    ``|xᵢ·q - x̂ᵢ·q| <= |q| errorsᵢ`` the bound of row i is
    ``|q| errorsᵢ + rounding``; doubled rounding terms and a relative 1e-4 cover
    the float32 arithmetic of the bound itself.
    """

    def __init__(self, coded: Coded, query: np.ndarray):
        q = query.astype(np.float64)
        dim = len(q)
        q_scaled = q * coded.scales
        self.query = q_scaled.astype(np.float32)
        self.shift = np.float32(128 * q_scaled.sum())
        gamma = dim * 2.0**-24 / (1 - dim * 2.0**-24)
        size = 255 * np.abs(q_scaled).sum() + abs(float(self.shift))
        self.factor = np.float32(np.linalg.norm(q) * (1 + 1e-4))
        self.rounding = np.float32(2 * (gamma + 2.0**-23) * size * (1 + 1e-4) + 1e-12)
        self.errors = coded.errors

    def bound(self, rows) -> np.ndarray:
        return self.errors[rows] * self.factor + self.rounding


def _nth_lower(lows: np.ndarray, n: int) -> float | None:
    """The n-th largest finite lower bound, or None when there are fewer than n."""
    lows = lows[np.isfinite(lows)]
    return float(np.partition(lows, len(lows) - n)[len(lows) - n]) if len(lows) >= n else None


def _candidates(coded: Coded, bounds: _Bounds, n: int, excluded: np.ndarray,
                block_rows: int) -> np.ndarray:
    """Rows whose upper bound reaches the n-th best lower bound, one pass over the codes."""
    codes = coded.codes
    piece_rows = max(1, _PIECE_BYTES // (4 * codes.shape[1]))
    block_rows = max(block_rows, piece_rows)
    approx = np.empty(block_rows, np.float32)
    buffer = np.empty((piece_rows, codes.shape[1]), np.float32)
    pool_rows, pool_lo, pool_hi = [], [], []
    pooled = 0
    threshold = -np.finfo(np.float32).max  # the n-th best lower bound so far
    for start in range(0, len(codes), block_rows):
        stop = min(start + block_rows, len(codes))
        a = _first_pass(codes[start:stop], bounds.query, approx[:stop - start], buffer)
        a -= bounds.shift
        bound = bounds.bound(slice(start, stop))
        lo, hi = np.searchsorted(excluded, [start, stop])
        a[excluded[lo:hi] - start] = -np.inf
        keep = np.flatnonzero(a + bound >= threshold)
        if len(keep):
            pool_rows.append(keep + start)
            pool_lo.append(a[keep] - bound[keep])
            pool_hi.append(a[keep] + bound[keep])
            pooled += len(keep)
        if pool_rows and (pooled > 4 * n + 1024 or stop == len(codes)):
            rows, lows, highs = (np.concatenate(p) for p in (pool_rows, pool_lo, pool_hi))
            nth = _nth_lower(lows, n)
            threshold = threshold if nth is None else max(threshold, nth)
            sel = np.flatnonzero((highs >= threshold) & np.isfinite(lows))
            pool_rows, pool_lo, pool_hi = [rows[sel]], [lows[sel]], [highs[sel]]
            pooled = len(sel)
    return np.concatenate(pool_rows) if pool_rows else np.empty(0, np.int64)


def _top_n_coded(vectors: np.ndarray, coded: Coded, query: np.ndarray, n: int,
                 excluded: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    rows = _candidates(coded, _Bounds(coded, query), n, excluded, block_rows)
    scores = np.asarray(vectors[rows], np.float64) @ query.astype(np.float64)
    order = np.lexsort((rows, -scores))[:n]
    return rows[order], scores[order].astype(np.float32)


def build_query(dim: int, vectors: list[np.ndarray], weights: list[float],
                similar: np.ndarray, not_similar: np.ndarray, beta: float) -> np.ndarray:
    """Rocchio: normalise((Σ wᵢ v̂ᵢ + Σ eⱼ) / (Σ wᵢ + #similar) − β·mean eₖ), float32 [D].

    Args:
        dim: D.
        vectors: the request's vectors (each normalised here), float64 [D] each.
        weights: one positive weight per vector.
        similar: float32 [J, D] embeddings of the images marked similar.
        not_similar: float32 [K, D] embeddings of the images marked not similar.
        beta: weight of the rejected images, 0..1.
    """
    total = np.zeros(dim, np.float64)
    for v, w in zip(vectors, weights):
        total += w * (v / np.linalg.norm(v))
    total += np.asarray(similar, np.float64).sum(axis=0) if len(similar) else 0.0
    q = total / (sum(weights) + len(similar))
    if len(not_similar):
        q = q - beta * np.asarray(not_similar, np.float64).mean(axis=0)
    norm = float(np.linalg.norm(q))
    if not norm > 1e-6:
        raise SearchError("the query is (nearly) the zero vector: the images marked not "
                          "similar cancel the others; lower beta or mark fewer images")
    return (q / norm).astype(np.float32)


# -- the request -------------------------------------------------------------------

def _single(args: dict, name: str):
    value = args.get(name)
    if isinstance(value, (list, tuple)):
        if len(value) > 1:
            raise SearchError(f"{name} is given {len(value)} times; give it once")
        value = value[0] if value else None
    return None if value is None or str(value).strip() == "" else str(value).strip()


def _many(args: dict, name: str) -> list[str]:
    value = args.get(name)
    if value is None:
        return []
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip() != ""]


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _integer(args: dict, name: str, default: int | None, lo: int, hi: int) -> int:
    text = _single(args, name)
    if text is None:
        if default is None:
            raise SearchError(f"{name} is required: an integer from {lo} to {hi}")
        return default
    try:
        value = int(text)
    except ValueError:
        raise SearchError(f"{name} must be an integer from {lo} to {hi}, "
                          f"got {_show(text)}") from None
    if not lo <= value <= hi:
        raise SearchError(f"{name} must be an integer from {lo} to {hi}, got {value}")
    return value


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SearchError(f"{what} must be a number, got {_show(text)}") from None
    if not math.isfinite(value):
        raise SearchError(f"{what} must be a finite number, got {_show(text)}")
    return value


def parse_request(args: dict) -> dict:
    """Check the request's parameters (everything but what needs the model and the
    database) and return them parsed; :class:`SearchError` says what is wrong."""
    req = {"model": _integer(args, "model", None, 1, 32767),
           "n": _integer(args, "n", 20, 1, LIMITS["n"])}
    beta = _single(args, "beta")
    req["beta"] = 0.5 if beta is None else _number(beta, "beta")
    if not 0 <= req["beta"] <= 1:
        raise SearchError(f"beta must be from 0 to 1, got {req['beta']}")
    req["similar"], req["not_similar"] = _many(args, "similar"), _many(args, "not_similar")
    if len(req["similar"]) + len(req["not_similar"]) > LIMITS["ids"]:
        raise SearchError(f"at most {LIMITS['ids']} images may be named in similar and "
                          "not_similar together")
    texts = _many(args, "vector")
    if len(texts) > LIMITS["vectors"]:
        raise SearchError(f"at most {LIMITS['vectors']} vectors per request, got {len(texts)}")
    req["vectors"] = []
    for i, text in enumerate(texts, 1):
        parts = [p for p in text.replace(" ", ",").split(",") if p]
        if not parts:
            raise SearchError(f"vector {i} is empty")
        v = np.array([_number(p, f"value {j} of vector {i}") for j, p in enumerate(parts, 1)])
        if not np.linalg.norm(v) > 0:
            raise SearchError(f"vector {i} is zero; it has no direction")
        req["vectors"].append(v)
    weights = _many(args, "weight")
    if weights and len(weights) != len(texts):
        raise SearchError(f"give one weight per vector: {len(texts)} vectors, "
                          f"{len(weights)} weights")
    req["weights"] = [_number(w, f"weight {i}") for i, w in enumerate(weights, 1)] or \
        [1.0] * len(texts)
    if any(w <= 0 for w in req["weights"]):
        raise SearchError("every weight must be positive")
    if not req["vectors"] and not req["similar"]:
        raise SearchError("nothing to search with: give at least one vector or one "
                          "image marked similar")
    return req


def _resolve(cursor, names: list[str], model: int) -> dict[str, int]:
    """obs_publisher_did or obs_id -> image_id; bound parameters only.

    A DID names one image on the server; an obs_id one inside a collection,
    here the model's.
    """
    if not names:
        return {}
    cursor.execute(
        "SELECT obs_publisher_did, obs_id, image_id FROM similarity.images "
        "WHERE obs_publisher_did = ANY(%(names)s) OR (obs_id = ANY(%(names)s) AND "
        "collection = (SELECT collection FROM similarity.models WHERE model_id = %(model)s))",
        {"names": list(set(names)), "model": model})
    found: dict[str, int] = {}
    for did, obs_id, image_id in cursor.fetchall():
        found[did] = found.get(did, image_id)
        if obs_id is not None:
            found.setdefault(obs_id, image_id)
    unknown = [name for name in names if name not in found]
    if unknown:
        shown = ", ".join(_show(u) for u in unknown[:5])
        raise SearchError(f"unknown image{'s' if len(unknown) > 1 else ''} {shown}"
                          f"{' and more' if len(unknown) > 5 else ''}: give the "
                          "obs_publisher_did or obs_id of published images")
    return found


def search(cursor, req: dict, vector_root: str) -> dict:
    """Run a parsed request (:func:`parse_request`) and return the reply's dict."""
    cursor.execute("SELECT m.model_id, v.file FROM similarity.models AS m "
                   "LEFT JOIN similarity.vector_files AS v ON v.model_id = m.model_id "
                   "WHERE m.model_id = %(model)s", {"model": req["model"]})
    row = cursor.fetchone()
    if row is None:
        cursor.execute("SELECT model_id FROM similarity.models ORDER BY model_id")
        known = ", ".join(str(r[0]) for r in cursor.fetchall()) or "none"
        raise SearchError(f"unknown model {req['model']}; published models: {known}")
    if row[1] is None:
        raise SearchError(f"model {req['model']} has no published embeddings, so it cannot "
                          "be searched by vector; publish a model with embeddings.npy")
    vf = open_vectors(os.path.join(vector_root, os.path.basename(row[1])))
    for i, v in enumerate(req["vectors"], 1):
        if len(v) != vf.dim:
            raise SearchError(f"vector {i} has {len(v)} values; model {req['model']} has "
                              f"dimension {vf.dim}")
    found = _resolve(cursor, req["similar"] + req["not_similar"], req["model"])
    rows = {}
    for key in ("similar", "not_similar"):
        ids = [found[name] for name in req[key]]
        try:
            rows[key] = vf.rows_of(ids)
        except KeyError:
            raise SearchError(f"some images in {key} have no embedding in model "
                              f"{req['model']} (another category or collection?)") from None
    query = build_query(vf.dim, req["vectors"], req["weights"],
                        vf.vectors[np.sort(rows["similar"])],
                        vf.vectors[np.sort(rows["not_similar"])], req["beta"])
    exclude = np.concatenate([rows["similar"], rows["not_similar"]])
    best, scores = vf.top_n(query, req["n"], exclude)
    image_ids = [int(i) for i in vf.ids[best]]
    cursor.execute("SELECT image_id, obs_publisher_did, obs_id FROM similarity.images "
                   "WHERE image_id = ANY(%(ids)s)", {"ids": image_ids})
    names = {r[0]: (r[1], r[2]) for r in cursor.fetchall()}
    results = []
    for rank, (image_id, score) in enumerate(zip(image_ids, scores.tolist()), 1):
        did, obs_id = names.get(image_id, (None, None))
        results.append({"rank": rank, "image_id": image_id, "obs_publisher_did": did,
                        "obs_id": obs_id, "score": score,
                        "dist": math.sqrt(max(0.0, 2.0 - 2.0 * score))})
    return {"model_id": req["model"], "dim": vf.dim, "n": len(results), "results": results}


def handle(args: dict, connect, vector_root: str) -> tuple[str, bytes]:
    """Answer one request of the service: ``("application/json", body)``.

    Args:
        args: the request's parameters (name -> value or list of values).
        connect: a context manager factory giving a DB-API connection
            (DaCHS's ``base.getTableConn``).
        vector_root: the folder of the vector files.

    Returns:
        The reply; on bad input ``{"error": message}`` (DaCHS sends both with
        HTTP status 200: see docs/search-service.md).
    """
    try:
        req = parse_request(args)
        with connect() as conn:
            cursor = conn.cursor()
            try:
                reply = search(cursor, req, vector_root)
            finally:
                cursor.close()
    except SearchError as exc:
        reply = {"error": str(exc)}
    return "application/json", json.dumps(reply).encode("utf-8")
