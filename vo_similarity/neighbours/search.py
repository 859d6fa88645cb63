"""Every image's exact k nearest neighbours: the one public entry point.

:func:`find_neighbours` checks its input, sorts the database by image id (so
that "smaller position" means "smaller id" in every backend's tie-break),
runs the chosen backend block by block and writes each finished block into
the output arrays, which may be ``numpy.lib.format.open_memmap`` files: peak
memory is then the embeddings, one copy of them on the compute device, and a
few similarity blocks, whatever N is.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from vo_similarity.neighbours.backends import RUNNERS, resolve_backend
from vo_similarity.neighbours.memory import empty_array

__all__ = ["PRECISIONS", "check_embeddings", "find_neighbours", "neighbour_count"]

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")

#: Largest tolerated deviation of an embedding's norm from 1.
NORM_TOLERANCE = 1e-3


def neighbour_count(k: int, n: int) -> int:
    """Columns of the result: ``k``, or ``n - 1`` when there are not k others."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if n < 2:
        raise ValueError(f"need at least 2 embeddings to find neighbours, got {n}")
    return min(k, n - 1)


def check_embeddings(embeddings: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate embeddings and their ids; return them as float32 and int64.

    Raises:
        ValueError: on a shape mismatch, non-finite values, vectors that are
            not unit length, or ids that are negative, too large for int32,
            or not unique.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    ids = np.asarray(ids)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array [N, D], got shape {x.shape}")
    if ids.shape != (len(x),):
        raise ValueError(f"ids must have shape ({len(x)},) to match the embeddings, "
                         f"got {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    for start in range(0, len(x), 65536):  # in blocks: no [N, D] temporaries
        part = x[start:start + 65536]
        if not np.isfinite(part).all():
            raise ValueError("embeddings contain NaN or infinite values")
        norms = np.sqrt(np.einsum("ij,ij->i", part, part, dtype=np.float64))
        bad = np.flatnonzero(np.abs(norms - 1) > NORM_TOLERANCE)
        if len(bad):
            raise ValueError(f"embeddings are not unit vectors (e.g. row {start + bad[0]} has "
                             f"norm {norms[bad[0]]:.6g}); normalise them first")
    ids = ids.astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() > np.iinfo(np.int32).max):
        raise ValueError("ids must lie between 0 and 2**31 - 1")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("ids are not unique")
    return x, ids


def find_neighbours(embeddings: np.ndarray, ids: np.ndarray, k: int = 1000, *,
                    backend: str = "auto", device: str | None = None,
                    precision: str = "fp32", block_size: int = 1024,
                    column_block_size: int = 65536,
                    out_ids: np.ndarray | None = None, out_dist: np.ndarray | None = None,
                    progress: bool = False, cluster=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (L2 on unit vectors) of every embedding.

    Args:
        embeddings: ``[N, D]`` unit vectors.
        ids: ``[N]`` unique non-negative image ids of the rows.
        k: neighbours per image; when ``k >= N`` there are only ``N - 1``.
        backend: ``"auto"``, ``"torch"``, ``"cuml"`` or ``"sklearn"`` (see
            :mod:`vo_similarity.neighbours.backends`).
        device: torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``...); default:
            a usable GPU, else the CPU.
        precision: ``"fp32"``, or ``"bf16"``/``"fp16"`` matrix products with an
            exact float32 re-rank (torch only; the answer is the same).
        block_size: query rows per block.
        column_block_size: database rows per block (torch).
        out_ids, out_dist: ``[N, min(k, N-1)]`` int32 / float32 arrays to fill
            (e.g. memory-mapped files); allocated when not given.
        progress: show a tqdm progress bar.
        cluster: a Dask scheduler address, ``distributed.Client`` or cluster:
            the torch backend's query blocks then run as tasks on its workers
            (:mod:`vo_similarity.neighbours.cluster`), with the same result;
            ``device`` is then the workers' (default ``"cpu"``).

    Returns:
        ``(neighbour_ids, distances)``: row i holds the image ids of the
        neighbours of ``ids[i]`` and their L2 distances, nearest first, ties
        broken by smaller id, ``ids[i]`` itself never included.
    """
    x, ids = check_embeddings(embeddings, ids)
    n = len(x)
    kk = neighbour_count(k, n)
    if kk < k:
        LOG.warning("k=%d but only %d other images: returning %d neighbours", k, n - 1, kk)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if cluster is not None:
        if backend not in ("auto", "torch"):
            raise ValueError(f"a cluster runs the torch backend, not {backend!r}")
        name, device = "cluster", device or "cpu"
    else:
        name, device = resolve_backend(backend, device)
    if precision != "fp32" and name not in ("torch", "cluster"):
        raise ValueError(f"precision {precision!r} needs the torch backend, not {name!r}")
    out_ids = _output(out_ids, (n, kk), np.int32, "out_ids")
    out_dist = _output(out_dist, (n, kk), np.float32, "out_dist")

    order = np.argsort(ids, kind="stable")
    identity = bool(np.all(order == np.arange(n)))
    sorted_ids = ids if identity else ids[order]
    xs = x if identity else x[order]
    LOG.info("neighbours of %d images (D=%d), k=%d, backend %s%s, %s", n, x.shape[1], kk,
             name, f" on {device}" if device else "", precision)

    if name == "cluster":
        from vo_similarity.neighbours.cluster import cluster_backend
        runner = functools.partial(cluster_backend, cluster=cluster)
    else:
        runner = RUNNERS[name]
    blocks = runner(xs, kk, block_size=block_size, column_block_size=column_block_size,
                    device=device, precision=precision)
    sorted_ids32 = sorted_ids.astype(np.int32)  # check_embeddings: ids < 2**31
    # one buffer for every block's ids (every runner yields blocks of block_size rows)
    gathered = empty_array((min(block_size, n), kk), np.int32)
    from tqdm.auto import tqdm
    with tqdm(total=n, unit="img", desc="neighbours", disable=not progress) as bar:
        for q0, q1, dist, pos in blocks:
            rows = slice(q0, q1) if identity else order[q0:q1]
            # mode="clip": positions are valid, and "raise" would gather into a
            # temporary of numpy's first
            out_ids[rows] = np.take(sorted_ids32, pos, out=gathered[:q1 - q0], mode="clip")
            out_dist[rows] = dist
            bar.update(q1 - q0)
    return out_ids, out_dist


def _output(array: np.ndarray | None, shape: tuple[int, int], dtype: type, name: str
            ) -> np.ndarray:
    if array is None:
        return empty_array(shape, dtype)
    if array.shape != shape or array.dtype != dtype:
        raise ValueError(f"{name} must be {np.dtype(dtype).name} of shape {shape}, "
                         f"got {array.dtype} {array.shape}")
    return array
