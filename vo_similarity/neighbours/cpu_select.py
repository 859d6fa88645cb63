"""Exact top-k selection on the CPU with a threshold scan (numba).

``torch.topk`` on a CPU spends about 15 ns per element at k = 1000 (it copies
each row into (value, index) pairs and runs nth_element on them), which at
d = 512 costs as much as the matrix product itself. Most elements of a row can
be rejected by a single comparison with a running threshold, as the heaps of
faiss do (Johnson, Douze & Jégou 2019, "Billion-scale similarity search with
GPUs", IEEE Trans. Big Data, §3 on k-selection): each row is scanned once;
elements not below the threshold are appended to a buffer (the threshold starts
at the k-th largest of the maxima of 2k column groups, a lower bound of the
k-th value that lets only a few per cent of the elements through); when the buffer is
full it is cut back to the elements not below its k-th largest value, which
becomes the new threshold. (A row whose ties at that value fill half the
buffer, e.g. many duplicated vectors, is handed to the torch selection.) Elements equal to the threshold are kept, and the
buffer stays in column order, so a final stable sort by decreasing value puts
ties in column order: the result is exactly that of
:func:`vo_similarity.neighbours.selection.topk_block`, at about 1 ns per element.

numba is optional: without it :func:`available` is False and the torch
selection is used.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

__all__ = ["available", "topk_rows"]

LOG = logging.getLogger(__name__)

try:
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None


def available() -> bool:
    """Whether the numba kernel can be used."""
    return numba is not None


#: Columns scanned between checks that the buffer has room.
_STEP = 1024
#: Columns whose maximum is compared with the threshold before looking at each.
_LANES = 16

if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _cut(vals, pos, count, k):
        """Keep, in order, the elements not below the k-th largest; return (count, kth)."""
        kth = np.partition(vals[:count], count - k)[count - k]
        kept = 0
        for i in range(count):
            if vals[i] >= kth:
                vals[kept] = vals[i]
                pos[kept] = pos[i]
                kept += 1
        return kept, kth

    @numba.njit(cache=True, nogil=True)
    def _start_threshold(row, k):
        """The k-th largest maximum of ~2k column groups: a lower bound of the k-th value.

        Group g holds the columns g, g + G, g + 2G, ... so that the maxima are
        taken with vector instructions.
        """
        groups = 2 * k
        width = len(row) // groups
        if width < 2:
            return -np.inf
        maxima = row[:groups].copy()
        for t in range(1, width):
            np.maximum(maxima, row[t * groups:(t + 1) * groups], maxima)
        return np.partition(maxima, groups - k)[groups - k]

    @numba.njit(cache=True, nogil=True)
    def _topk_row(row, k, offset, out_vals, out_pos, vals, pos):
        """One row; False when ties overflow the buffer (the caller then falls back).

        The scan skips groups of ``_LANES`` columns whose maximum is below the
        threshold, and appends the others without branching (write, then
        advance the count when the value passes), in steps of ``_STEP`` columns
        with room for a whole step in the buffer.
        """
        n = len(row)
        cap = len(vals)
        count = 0
        threshold = _start_threshold(row, k)
        for start in range(0, n, _STEP):
            if cap - count < _STEP:
                count, threshold = _cut(vals, pos, count, k)
                if cap - count < _STEP:
                    return False
            stop = min(n, start + _STEP)
            for lane in range(start, stop, _LANES):
                end = min(stop, lane + _LANES)
                top = row[lane]
                for j in range(lane + 1, end):  # vectorised maximum of a few values
                    top = max(top, row[j])
                if top < threshold:  # most groups hold nothing that passes
                    continue
                for j in range(lane, end):
                    v = row[j]
                    vals[count] = v
                    pos[count] = j
                    count += v >= threshold
        if count > k:
            count, threshold = _cut(vals, pos, count, k)
        order = np.argsort(-vals[:count], kind="mergesort")
        for i in range(k):
            out_vals[i] = vals[order[i]]
            out_pos[i] = pos[order[i]] + offset
        return True

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _topk_rows(block, k, offset, out_vals, out_pos, done):
        rows = block.shape[0]
        cap = 2 * k + 4 * _STEP
        for r in numba.prange(rows):
            vals = np.empty(cap, dtype=np.float32)
            pos = np.empty(cap, dtype=np.int64)
            done[r] = _topk_row(block[r], k, offset, out_vals[r], out_pos[r], vals, pos)


def topk_rows(block: torch.Tensor, k: int, *, column_offset: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of every row of a CPU float32 block, ties by smaller column.

    Same contract as :func:`vo_similarity.neighbours.selection.topk_block`.
    """
    b, n = block.shape
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} columns of the block")
    values = np.empty((b, k), dtype=np.float32)
    positions = np.empty((b, k), dtype=np.int64)
    if k:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        done = np.empty(b, dtype=np.bool_)
        _topk_rows(block.contiguous().numpy(), k, column_offset, values, positions, done)
        if not done.all():  # rows with more ties than the buffer holds
            from vo_similarity.neighbours.selection import topk_block
            rows = torch.from_numpy(np.flatnonzero(~done))
            LOG.debug("%d rows with many ties selected by torch", len(rows))
            fixed = topk_block(block[rows], k, column_offset=column_offset)
            values[rows.numpy()] = fixed[0].numpy()
            positions[rows.numpy()] = fixed[1].numpy()
    return torch.from_numpy(values), torch.from_numpy(positions)
