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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps is Linux's")
def test_no_huge_page_advice_after_advised_heap_memory_was_freed():
    """The history that gave malloc'd (torch's) memory the advice: freeing a
    large block raises glibc's mmap threshold, the next advised numpy arrays
    come from the heap, and the hole they leave is handed out again."""
    for _ in range(3):
        np.ones(20 << 20, np.uint8)  # mapped and freed: the threshold rises to ~20 MiB
    advised = [np.ones(SIZE, np.uint8) for _ in range(5)]  # now from the heap
    if "hg" not in _vm_flags(advised[1]):
        pytest.skip("numpy gives no huge-page advice here: nothing to avoid")
    del advised[1:3]  # a 32 MiB hole of advised heap pages
    ours = [empty_array((SIZE // 8,), np.int64) for _ in range(3)]
    assert all("hg" not in _vm_flags(a) for a in ours)


def test_empty_array_is_a_writable_c_array_of_the_dtype():
    for shape in ((3, 5), (1024, 1024)):  # from np.empty, and from a map of its own
        for dtype in (np.float32, np.int32, np.int64, np.uint8):
            a = empty_array(shape, dtype)
            assert a.dtype == dtype and a.shape == shape and a.flags.c_contiguous
            assert a.flags.writeable
            a[:] = 7
            assert (a == 7).all()


def test_a_mapped_array_outlives_the_name_of_its_map():
    a = empty_array((1024, 1024), np.float32)[10:20]
    a[:] = 1.5
    import gc
    gc.collect()
    assert float(a.sum()) == 1.5 * a.size
