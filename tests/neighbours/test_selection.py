import math

import pytest
import torch

from vo_similarity.neighbours import cpu_select
from vo_similarity.neighbours.selection import order_keys, topk_block, topk_exact


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


@pytest.mark.skipif(not cpu_select.available(), reason="numba is not installed")
@pytest.mark.parametrize("n, k", [(50, 7), (3000, 40), (20000, 30), (5000, 5000)])
def test_numba_selection_equals_torch_selection(n, k):
    gen = torch.Generator().manual_seed(n)
    block = torch.randn(40, n, generator=gen)
    block[1] = torch.randint(0, 3, (n,), generator=gen).float()   # ties overflow the buffer
    block[2] = torch.randint(0, 300, (n,), generator=gen).float()  # ties at the boundary
    block[3, ::7] = -torch.inf
    got = cpu_select.topk_rows(block, k, column_offset=11)
    ref = topk_block(block, k, column_offset=11)
    assert torch.equal(got[0], ref[0])
    assert torch.equal(got[1], ref[1])
