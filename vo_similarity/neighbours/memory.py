"""Large result arrays without numpy's huge-page advice.

numpy (≥ 1.20, on Linux) calls ``madvise(MADV_HUGEPAGE)`` on every array of
4 MiB or more it allocates.  Where the kernel's transparent huge pages are in
``madvise`` mode with ``defrag=madvise`` (Debian's default), each first touch
of such an array may stall in direct memory compaction: on the development
machines (AMD EPYC virtual machines) writing the 2 × 80 MB of results of a
20,000-image k-NN into fresh ``np.zeros`` arrays took 2.0 s, against 0.13 s
with ``NUMPY_MADVISE_HUGEPAGE=0`` — half as long again as the whole matrix
product (docs/neighbours.md, "Memory").

The neighbour stage therefore takes its large arrays from a private anonymous
map of their own.  A fresh map carries no advice whatever the process did
before; memory from ``malloc`` (torch's CPU allocator, for one) does not
promise that: once glibc's dynamic mmap threshold has risen, a large block can
come from heap pages that an earlier numpy array had advised.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["empty_array"]

#: numpy advises arrays from this size on; smaller ones need no map of their own.
_ADVICE_THRESHOLD = 4 << 20


def empty_array(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised, writable C-contiguous array that carries no huge-page advice.

    Arrays of 4 MiB or more live in a private anonymous map (page-aligned,
    zero-filled by the kernel on first touch, unmapped when the last view of
    the array goes); smaller ones come from ``np.empty``.
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    if nbytes < _ADVICE_THRESHOLD:
        return np.empty(shape, dtype=dtype)
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)
