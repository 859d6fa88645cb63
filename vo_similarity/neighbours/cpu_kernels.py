"""The compiled loops of the CPU selection: a chunk's candidates as keys, and back.

The keys are those of :mod:`vo_similarity.neighbours.cpu_select` (step 2).
numpy has no fast stream compaction: ``flatnonzero``, boolean indexing,
``compress`` and ``extract`` all cost about 1 ns per element of the block on
one core (of an AVX-512 machine), half of the whole selection, although only
~5 % of the elements are kept. This loop writes every column number to the
next free slot and advances the slot by the comparison, without a branch
(~0.45 ns per element), then packs the kept elements into keys;
:func:`decode_keys_into` turns the selected keys back into values and columns.

Compiled by numba on first use and cached beside this file
(``cache=True``); ``nogil`` lets the selection's thread pool run it on
every core at once.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["candidate_keys", "decode_keys_into", "merge_sorted_into"]

_NONE = np.uint64(0xFFFFFFFFFFFFFFFF)  # padding: after every real key


@njit(nogil=True, cache=True)
def candidate_keys(rows: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``[c, m]`` keys of the elements of each row not below its threshold, padded.

    Args:
        rows: ``[c, n]`` float32, no NaN.
        thresholds: ``[c]`` float32.

    Returns:
        uint64 keys (value descending, column ascending), ``m`` the largest
        count of a row, shorter rows padded with the largest uint64.
    """
    c, n = rows.shape
    counts = np.zeros(c, np.int64)
    for r in range(c):  # a vectorised pass: the width before anything is written
        threshold = thresholds[r]
        row = rows[r]
        m = 0
        for j in range(n):
            m += row[j] >= threshold
        counts[r] = m
    width = counts.max() if c else 0
    keys = np.empty((c, width), np.uint64)
    # A row's columns, one spare slot for the last write. Small on purpose: a
    # scratch of the row's length would be fresh memory in every call, and
    # Linux's transparent huge pages make each first touch of it expensive.
    columns = np.empty(width + 1, np.int32)
    for r in range(c):
        threshold = thresholds[r]
        row = rows[r]
        m = 0
        for j in range(n):
            columns[m] = j
            m += row[j] >= threshold
        for i in range(m):
            j = columns[i]
            # +0 folds -0 onto +0, then the order-preserving integer
            bits = np.int64(np.float32(row[j] + np.float32(0.0)).view(np.int32))
            ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
            keys[r, i] = (np.uint64(0x7FFFFFFF - ordered) << np.uint64(32)) | np.uint64(j)
        for i in range(m, width):
            keys[r, i] = _NONE
    return keys


@njit(nogil=True, cache=True)
def decode_keys_into(keys: np.ndarray, column_offset: int, out_values: np.ndarray,
                     out_columns: np.ndarray) -> None:
    """The float32 values and the columns (plus ``column_offset``) of ``[c, k]``
    keys of :func:`candidate_keys`, written into ``out_values`` and ``out_columns``."""
    c, k = keys.shape
    for r in range(c):
        for i in range(k):
            key = keys[r, i]
            ordered = np.int64(0x7FFFFFFF) - np.int64(key >> np.uint64(32))
            bits = np.int32(ordered ^ ((ordered >> 31) & 0x7FFFFFFF))
            out_values[r, i] = bits.view(np.float32)
            out_columns[r, i] = np.int64(key & np.uint64(0xFFFFFFFF)) + column_offset


@njit(nogil=True, cache=True)
def merge_sorted_into(values_a: np.ndarray, positions_a: np.ndarray, values_b: np.ndarray,
                      positions_b: np.ndarray, out_values: np.ndarray,
                      out_positions: np.ndarray) -> None:
    """The best ``k = out_values.shape[1]`` of two lists per row, in order.

    Each row of ``a`` and of ``b`` is sorted by value descending, then
    position ascending (positions distinct between ``a`` and ``b``), and
    ``k`` is at most the two lengths together; the result is in the same
    order, so equal values (``-0.0`` and ``+0.0`` among them) come by position.
    """
    c, k = out_values.shape
    ma, mb = values_a.shape[1], values_b.shape[1]
    for r in range(c):
        i = 0
        j = 0
        for t in range(k):
            if j >= mb:
                take_a = True
            elif i >= ma:
                take_a = False
            else:
                va, vb = values_a[r, i], values_b[r, j]
                take_a = va > vb or (va == vb and positions_a[r, i] < positions_b[r, j])
            if take_a:
                out_values[r, t] = values_a[r, i]
                out_positions[r, t] = positions_a[r, i]
                i += 1
            else:
                out_values[r, t] = values_b[r, j]
                out_positions[r, t] = positions_b[r, j]
                j += 1
