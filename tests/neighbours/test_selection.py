import math

import numpy as np
import pytest
import torch

from vo_similarity.neighbours import cpu_kernels, cpu_select
from vo_similarity.neighbours.selection import order_keys, topk_block, topk_exact


def rank_keys(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The CPU selection's keys written plainly in numpy: ascending order is
    (value descending, column ascending)."""
    bits = (values.astype(np.float32, copy=False) + np.float32(0)).view(np.int32).astype(np.int64)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return ((0x7FFFFFFF - ordered).astype(np.uint64) << np.uint64(32)) | columns.astype(np.uint64)


def decode_rank_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float32 values and int64 columns packed by :func:`rank_keys`."""
    ordered = 0x7FFFFFFF - (keys >> np.uint64(32)).astype(np.int64)
    bits = (ordered ^ ((ordered >> 31) & 0x7FFFFFFF)).astype(np.int32)
    return bits.view(np.float32), (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


def test_order_keys_follow_value_then_position():
    values = torch.tensor([-math.inf, -2.5, -0.0, 0.0, 1e-30, 0.5, 0.5, 3.0])
    positions = torch.tensor([0, 1, 2, 3, 4, 9, 5, 6])
    keys = order_keys(values, positions)
    order = torch.argsort(keys, descending=True).tolist()
    # 3.0; 0.5 at position 5 before 0.5 at 9; 1e-30; then +-0 by position; -2.5; -inf
    assert order == [7, 6, 5, 4, 2, 3, 1, 0]


def _brute(block: torch.Tensor, k: int):
    cols = torch.arange(block.shape[1]).expand_as(block)
    return topk_exact(block, cols, k)


def test_topk_block_matches_exact_selection_with_many_ties():
    gen = torch.Generator().manual_seed(0)
    block = torch.randint(0, 30, (64, 500), generator=gen).float() / 30  # heavy ties
    block[3] = 0.25                                                       # a constant row
    for k in (1, 17, 499, 500):
        values, positions = topk_block(block, k, column_offset=100)
        ref_values, ref_positions = _brute(block, k)
        assert torch.equal(values, ref_values)
        assert torch.equal(positions, ref_positions + 100)
    assert positions[3].tolist() == list(range(100, 600))


def test_topk_block_without_ties_equals_torch_topk_set():
    gen = torch.Generator().manual_seed(1)
    block = torch.randn(32, 2000, generator=gen)
    values, positions = topk_block(block, 50)
    ref = torch.topk(block, 50, dim=1)
    assert torch.equal(values, ref.values)
    assert torch.equal(positions, ref.indices)


@pytest.mark.parametrize("n, k", [(50, 7), (3000, 40), (20000, 30), (5000, 5000), (9000, 1)])
def test_cpu_selection_equals_torch_selection(n, k):
    gen = torch.Generator().manual_seed(n)
    block = torch.randn(40, n, generator=gen)
    block[1] = torch.randint(0, 3, (n,), generator=gen).float()   # ties: most of the row passes
    block[2] = torch.randint(0, 300, (n,), generator=gen).float()  # ties at the boundary
    block[3, ::7] = -torch.inf
    got = cpu_select.topk_rows(block, k, column_offset=11)
    ref = topk_block(block, k, column_offset=11)
    assert torch.equal(got[0], ref[0])
    assert torch.equal(got[1], ref[1])


def test_cpu_selection_fills_given_arrays_and_checks_them():
    gen = torch.Generator().manual_seed(3)
    block = torch.randn(70, 6000, generator=gen)
    out = np.full((70, 25), np.nan, np.float32), np.full((70, 25), -1, np.int64)
    values, positions = cpu_select.topk_rows(block, 25, column_offset=4, out=out)
    ref = topk_block(block, 25, column_offset=4)
    assert torch.equal(values, ref[0]) and torch.equal(positions, ref[1])
    assert np.shares_memory(values.numpy(), out[0]) and np.shares_memory(positions.numpy(), out[1])
    with pytest.raises(ValueError, match="C-contiguous float32 and int64 arrays of shape"):
        cpu_select.topk_rows(block, 25, out=(out[0][:, :20], out[1]))
    with pytest.raises(ValueError, match="C-contiguous"):
        cpu_select.topk_rows(block, 25, out=(out[0].astype(np.float64), out[1]))


@pytest.mark.parametrize("ka, kb, k", [(30, 30, 30), (30, 7, 25), (5, 40, 45), (1, 1, 1)])
def test_compiled_merge_equals_selecting_again(ka, kb, k):
    gen = torch.Generator().manual_seed(ka * 100 + kb)
    values = torch.randint(-3, 4, (50, ka + kb), generator=gen).float() / 2  # many ties
    values[0, :3] = -0.0
    values[1, ::5] = -torch.inf
    positions = torch.randperm(50 * (ka + kb), generator=gen).view(50, -1)
    a = topk_exact(values[:, :ka], positions[:, :ka], ka)
    b = topk_exact(values[:, ka:], positions[:, ka:], kb)
    ref = topk_exact(torch.cat([a[0], b[0]], 1), torch.cat([a[1], b[1]], 1), k)
    out = np.empty((50, k), np.float32), np.empty((50, k), np.int64)
    cpu_kernels.merge_sorted_into(a[0].numpy(), a[1].numpy(), b[0].numpy(), b[1].numpy(), *out)
    assert np.array_equal(out[1], ref[1].numpy())
    assert np.array_equal(out[0].view(np.uint32), ref[0].numpy().view(np.uint32))  # same bits


def test_cpu_keys_round_trip_and_order():
    values = np.array([-np.inf, -2.5, -0.0, 0.0, 1e-30, 0.5, 0.5, 3.0], dtype=np.float32)
    columns = np.array([0, 1, 2, 3, 4, 9, 5, 6])
    keys = rank_keys(values, columns)
    # ascending keys: 3.0; 0.5 at column 5 before 0.5 at 9; 1e-30; +-0 by column; -2.5; -inf
    assert np.argsort(keys).tolist() == [7, 6, 5, 4, 2, 3, 1, 0]
    back, cols = decode_rank_keys(keys)
    assert np.array_equal(back, values) and np.array_equal(cols, columns)  # -0 comes back as +0
    # the compiled keys of every element (the selection's path for short rows)
    every = cpu_kernels.candidate_keys(values[None], np.array([-np.inf], dtype=np.float32))
    assert np.array_equal(every, rank_keys(values, np.arange(len(values)))[None])


def test_cpu_selection_is_the_same_with_one_or_two_threads():
    gen = torch.Generator().manual_seed(5)
    block = torch.randn(100, 9000, generator=gen)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu_select.topk_rows(block, 100)
        torch.set_num_threads(2)
        two = cpu_select.topk_rows(block, 100)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def _reference_candidate_keys(rows: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The compiled loop's answer written plainly: each row's kept keys, padded."""
    kept = [rank_keys(row[row >= t], np.flatnonzero(row >= t))
            for row, t in zip(rows, thresholds)]
    width = max((len(k) for k in kept), default=0)
    out = np.full((len(rows), width), np.iinfo(np.uint64).max, dtype=np.uint64)
    for r, keys in enumerate(kept):
        out[r, :len(keys)] = keys
    return out


def test_compiled_candidates_equal_the_plain_reference():
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((9, 3001)).astype(np.float32)
    rows[1] = rng.integers(0, 3, 3001)        # ties at the threshold
    rows[2, ::5] = -np.inf                    # excluded entries
    rows[3, :40] = -0.0                       # -0 keys as +0
    rows[4] = 0.0
    thresholds = np.quantile(rows, 0.93, axis=1).astype(np.float32)
    thresholds[3] = 0.0
    thresholds[5] = np.inf                    # a row that keeps nothing
    thresholds[6] = -np.inf                   # one that keeps everything
    got = cpu_kernels.candidate_keys(rows, thresholds)
    want = _reference_candidate_keys(rows, thresholds)
    assert got.dtype == np.uint64 and np.array_equal(got, want)
    assert cpu_kernels.candidate_keys(rows[:0], thresholds[:0]).shape == (0, 0)


def test_compiled_decoding_equals_the_plain_one():
    values = np.array([[-np.inf, -2.5, -0.0, 0.0], [1e-30, 0.5, 3.0, np.float32(7e37)]],
                      dtype=np.float32)
    columns = np.array([[0, 1, 2, 3], [4, 9, 5, 2**31 - 1]])
    keys = rank_keys(values, columns)
    out_values = np.empty(values.shape, np.float32)
    out_columns = np.empty(values.shape, np.int64)
    cpu_kernels.decode_keys_into(keys, 5, out_values, out_columns)
    want_values, want_columns = decode_rank_keys(keys)
    assert np.array_equal(out_values.view(np.int32), want_values.view(np.int32))
    assert np.array_equal(out_columns, want_columns + 5)
