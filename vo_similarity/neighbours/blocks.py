"""Streaming blocked k-NN search with torch: the default engine.

The similarity matrix ``X Xᵀ`` of N unit vectors is never held whole. Queries
are taken ``block_size`` rows at a time and compared with the database
``column_block_size`` columns at a time; each ``[block_size, column_block_size]``
block of inner products is reduced at once to its k best columns per row and
merged into the running top k of its query block. The same code runs on the
CPU and on CUDA; only where the tensors live changes, and on the CPU the
k-selection uses the threshold filter of :mod:`vo_similarity.neighbours.cpu_select`
(the same exact result as ``torch.topk`` plus tie repair, at a tenth of the cost).

In the style of ``faiss.contrib.exhaustive_search``, :func:`knn_blocks` is a
generator: it yields one finished query block at a time, so that callers can
stream results to disk, show progress, or stop early, and it logs each block.

The database is expected in *position order* (sorted by image id, see
:mod:`vo_similarity.neighbours.search`); positions are row indices into it, and
ties are broken by smaller position, i.e. smaller id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import torch

from vo_similarity.neighbours import cpu_select
from vo_similarity.neighbours.cpu_kernels import merge_sorted_into
from vo_similarity.neighbours.memory import empty_array
from vo_similarity.neighbours.rerank import reduced_precision_dtype, rerank_topk
from vo_similarity.neighbours.selection import topk_block, topk_exact

__all__ = ["block_ranges", "knn_blocks", "knn_query_block", "knn_query_rows",
           "similarity_to_distance"]

LOG = logging.getLogger(__name__)


def block_ranges(n: int, block_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of at most ``block_size`` rows."""
    if block_size < 1:
        raise ValueError(f"block size must be positive, got {block_size}")
    for start in range(0, n, block_size):
        yield start, min(n, start + block_size)


def similarity_to_distance(similarity: torch.Tensor, *, out: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """L2 distance of unit vectors from their inner product: √max(0, 2 − 2s).

    ``out`` (e.g. ``similarity`` itself, overwritten) receives the result
    without temporaries; the bits are the same either way (2 + (−2s) = 2 − 2s
    exactly).
    """
    if out is None:
        return torch.sqrt(torch.clamp(2.0 - 2.0 * similarity, min=0.0))
    torch.mul(similarity, -2.0, out=out)
    return out.add_(2.0).clamp_(min=0.0).sqrt_()


def _exclude_self(block: torch.Tensor, q0: int, c0: int) -> None:
    """Set the similarity of each query row with itself to ``-inf``, in place."""
    b, n = block.shape
    first, last = max(q0, c0), min(q0 + b, c0 + n)
    if first < last:
        rows = torch.arange(first - q0, last - q0, device=block.device)
        block[rows, rows + (q0 - c0)] = -torch.inf


def _select(sims: torch.Tensor, k: int, column_offset: int,
            out: tuple[np.ndarray, np.ndarray] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of a block: the threshold filter on the CPU (into ``out``
    when given), torch on a GPU."""
    if sims.device.type == "cpu":
        return cpu_select.topk_rows(sims, k, column_offset=column_offset, out=out)
    return topk_block(sims, k, column_offset=column_offset)


def _search_query_block(x: torch.Tensor, x_low: torch.Tensor | None, q0: int, q1: int,
                        k: int, column_block_size: int, eps: float, buffer: torch.Tensor,
                        results: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k similarities and positions of queries ``q0:q1`` over all columns.

    ``buffer`` is flat float32 storage for one similarity block, reused for
    every block: a fresh block of a few hundred MiB per product would cost
    page faults and the kernel's zeroing of new pages (on the CPU about a
    third of the product's time, measured). ``results`` (flat float32 and
    int64 arrays of at least ``(q1 - q0) * k`` elements; see
    :func:`_result_buffers`) receive the answer, for the same reason.
    """
    queries = x[q0:q1]
    out = None
    if results is not None:
        size = (q1 - q0) * k
        out = results[0][:size].reshape(q1 - q0, k), results[1][:size].reshape(q1 - q0, k)
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    for c0, c1 in block_ranges(x.shape[0], column_block_size):
        kk = min(k, c1 - c0)
        if x_low is None:
            sims = torch.mm(queries, x[c0:c1].T,
                            out=buffer[:(q1 - q0) * (c1 - c0)].view(q1 - q0, c1 - c0))
            _exclude_self(sims, q0, c0)
            part = _select(sims, kk, c0, out)
        else:
            approx = (x_low[q0:q1] @ x_low[c0:c1].T).to(torch.float32)
            _exclude_self(approx, q0, c0)
            part = rerank_topk(queries, x[c0:c1], approx, kk, eps=eps,
                               query_offset=q0, column_offset=c0)
        best = _keep_best(best, part, k)
    assert best is not None
    return best


def _keep_best(best: tuple[torch.Tensor, torch.Tensor] | None,
               part: tuple[torch.Tensor, torch.Tensor], k: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of the running result and one column block's (both sorted)."""
    if best is None:
        return part
    kk = min(k, best[0].shape[1] + part[0].shape[1])
    if best[0].device.type == "cpu":
        values = empty_array((best[0].shape[0], kk), np.float32)
        positions = empty_array((best[0].shape[0], kk), np.int64)
        merge_sorted_into(*(t.contiguous().numpy() for t in (*best, *part)), values, positions)
        return torch.from_numpy(values), torch.from_numpy(positions)
    values = torch.cat([best[0], part[0]], dim=1)
    return topk_exact(values, torch.cat([best[1], part[1]], dim=1), kk)


def _result_buffers(x: torch.Tensor, k: int, block_size: int, column_block_size: int,
                    precision: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Flat storage for one query block's answer, reused for every block, where
    the answer is the CPU selection's own output: an fp32 product on the CPU
    with one column block over every column (otherwise the answer comes from a
    merge or a re-rank, in memory of their own)."""
    n = x.shape[0]
    if x.device.type != "cpu" or precision != "fp32" or n > column_block_size:
        return None
    size = min(block_size, n) * k
    return empty_array((size,), np.float32), empty_array((size,), np.int64)


def _prepare(x: torch.Tensor, k: int, precision: str
             ) -> tuple[torch.Tensor | None, float]:
    """Check k; the reduced-precision copy of ``x`` and its error bound (None, 0 for fp32)."""
    n, d = x.shape
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and N-1={n - 1}, got {k}")
    if precision == "fp32":
        return None, 0.0
    dtype, eps = reduced_precision_dtype(precision, d)
    return x.to(dtype), eps


@torch.no_grad()
def knn_blocks(x: torch.Tensor, k: int, *, block_size: int = 1024,
               column_block_size: int = 65536, precision: str = "fp32"
               ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """Exact k nearest neighbours of every row of ``x`` among the other rows.

    Args:
        x: ``[N, d]`` float32 unit vectors in position order, on the device to
            compute on.
        k: neighbours per row, ``1 <= k <= N - 1``.
        block_size: query rows per block.
        column_block_size: database rows per block; a similarity block holds
            ``block_size * column_block_size`` floats.
        precision: ``"fp32"``, or ``"bf16"``/``"fp16"`` for the matrix product
            followed by an exact float32 re-rank (see
            :mod:`vo_similarity.neighbours.rerank`).

    Yields:
        ``(q0, q1, similarities, positions)`` for query rows ``q0:q1``:
        ``[q1-q0, k]`` float32 similarities and int64 positions on ``x``'s
        device, best first, ties by smaller position, self excluded. On the
        CPU a block's tensors may share memory with the next block's: copy
        what you keep before asking for the next.
    """
    n, d = x.shape
    x_low, eps = _prepare(x, k, precision)
    LOG.info("k-NN of %d vectors of dimension %d, k=%d, blocks %d x %d, %s on %s",
             n, d, k, block_size, column_block_size, precision, x.device)
    buffer = x.new_empty(0 if x_low is not None else min(block_size, n) * min(column_block_size, n))
    results = _result_buffers(x, k, block_size, column_block_size, precision)
    for q0, q1 in block_ranges(n, block_size):
        t0 = time.perf_counter()
        sims, positions = _search_query_block(x, x_low, q0, q1, k, column_block_size, eps,
                                              buffer, results)
        LOG.debug("query block %d:%d done in %.3f s", q0, q1, time.perf_counter() - t0)
        yield q0, q1, sims, positions


@torch.no_grad()
def knn_query_block(x: torch.Tensor, q0: int, q1: int, k: int, *,
                    column_block_size: int = 65536, precision: str = "fp32"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The block ``q0:q1`` of :func:`knn_blocks`, alone: the same arithmetic, so
    the same bits (what a cluster's worker computes, :mod:`.cluster`)."""
    n = x.shape[0]
    x_low, eps = _prepare(x, k, precision)
    buffer = x.new_empty(0 if x_low is not None else (q1 - q0) * min(column_block_size, n))
    return _search_query_block(x, x_low, q0, q1, k, column_block_size, eps, buffer)


@torch.no_grad()
def knn_query_rows(x: torch.Tensor, positions: torch.Tensor, k: int, *,
                   column_block_size: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of the rows ``positions`` of ``x`` (any rows, in any order)
    among all the other rows, float32: what :func:`knn_blocks` gives for them.

    Returns:
        ``[len(positions), k]`` similarities and positions, best first, ties by
        smaller position, each row's own position excluded.
    """
    n = x.shape[0]
    _prepare(x, k, "fp32")
    queries = x[positions]
    own = torch.arange(len(positions), device=x.device)
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    for c0, c1 in block_ranges(n, column_block_size):
        sims = queries @ x[c0:c1].T
        inside = (positions >= c0) & (positions < c1)
        sims[own[inside], positions[inside] - c0] = -torch.inf
        best = _keep_best(best, _select(sims, min(k, c1 - c0), c0), k)
    assert best is not None
    return best
