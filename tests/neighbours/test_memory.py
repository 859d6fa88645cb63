"""The neighbour stage's large arrays carry no huge-page advice (neighbours/memory.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from vo_similarity.neighbours.memory import empty_array

SIZE = 16 << 20  # above numpy's 4 MiB advice threshold


def _vm_flags(array: np.ndarray) -> list[str]:
    """VmFlags of the mapping of /proc/self/smaps that holds the middle of the
    array (an advice covers the 2 MiB-aligned part only, a mapping of its own)."""
    address = array.__array_interface__["data"][0] + array.nbytes // 2
    flags, inside = None, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(part, 16) for part in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                flags = line.split()[1:]
                break
    assert flags is not None, "no mapping holds the array"
    return flags


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps is Linux's")
def test_large_arrays_have_no_huge_page_advice():
    control = np.empty(SIZE, np.uint8)
    if "hg" not in _vm_flags(control):
        pytest.skip("numpy gives no huge-page advice here (NUMPY_MADVISE_HUGEPAGE=0 or "
                    "an old kernel): nothing to avoid")
    ours = empty_array((SIZE // 8,), np.int64)
    assert "hg" not in _vm_flags(ours)


def test_empty_array_is_a_writable_c_array_of_the_dtype():
    for dtype in (np.float32, np.int32, np.int64):
        a = empty_array((3, 5), dtype)
        assert a.dtype == dtype and a.shape == (3, 5) and a.flags.c_contiguous
        a[:] = 7
        assert (a == 7).all()
