"""Large result arrays without numpy's huge-page advice.

numpy (≥ 1.20, on Linux) calls ``madvise(MADV_HUGEPAGE)`` on every array of
4 MiB or more it allocates.  Where the kernel's transparent huge pages are in
``madvise`` mode with ``defrag=madvise`` (Debian's default), each first touch
of such an array may stall in direct memory compaction: on the development
machines (AMD EPYC virtual machines) writing the 2 × 80 MB of results of a
20,000-image k-NN into fresh ``np.zeros`` arrays took 2.0 s, against 0.13 s
with ``NUMPY_MADVISE_HUGEPAGE=0`` — half as long again as the whole matrix
product (docs/neighbours.md, "Memory").  torch's CPU allocator gives no such
advice, so the neighbour stage takes its large results from it and hands them
out as numpy arrays (which keep the tensor alive).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["empty_array"]


def empty_array(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous numpy array from torch's CPU allocator
    (numpy's own for a dtype torch does not have)."""
    torch_dtype = _TORCH.get(np.dtype(dtype))
    if torch_dtype is None:
        return np.empty(shape, dtype=dtype)
    return torch.empty(shape, dtype=torch_dtype, device="cpu").numpy()


_TORCH = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
          np.dtype(np.int32): torch.int32, np.dtype(np.int64): torch.int64,
          np.dtype(np.uint8): torch.uint8, np.dtype(np.bool_): torch.bool}
