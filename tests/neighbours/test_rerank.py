import numpy as np
import pytest
import torch

from vo_similarity.neighbours.rerank import error_bound
from vo_similarity.neighbours.search import find_neighbours

from .conftest import U32, assert_fp32_distances_close, clustered, fp32_distance_tolerance

FORMATS = {"bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_error_bound_holds(precision):
    x = torch.from_numpy(clustered(600, 256, clusters=3, spread=0.2, seed=7))
    exact = x.double() @ x.double().T
    low = x.to(FORMATS[precision])
    approx = (low @ low.T).double()
    worst = float((approx - exact).abs().max())
    bound = error_bound(precision, 256)
    assert worst <= bound
    assert worst > bound / 50, "the bound should not be absurdly loose"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_equals_fp32_exactly(grid_data, precision):
    x, ids = grid_data
    ref = find_neighbours(x, ids, 40, backend="torch", precision="fp32", block_size=64)
    got = find_neighbours(x, ids, 40, backend="torch", precision=precision, block_size=64,
                          column_block_size=150)
    assert np.array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_without_rerank_reduced_precision_would_differ(grid_data):
    """The test above has teeth: ranking by the bf16 product alone gives other neighbours."""
    x, ids = grid_data
    ref = find_neighbours(x, ids, 40, backend="torch")
    low = torch.from_numpy(x).bfloat16()
    sims = (low @ low.T).float()
    sims.fill_diagonal_(-torch.inf)
    top = torch.topk(sims, 40, dim=1).indices.numpy()
    differs = sum(set(ids[top[r]]) != set(ref[0][r]) for r in range(len(x)))
    assert differs > len(x) // 40


def test_reduced_precision_on_clustered_data(clustered_data):
    """Same ids; the re-rank sums its float32 products in another order (a batched
    product) than the float32 path, so distances agree to the derived bound."""
    x, ids = clustered_data
    ref = find_neighbours(x, ids, 30, backend="torch")
    got = find_neighbours(x, ids, 30, backend="torch", precision="bf16", block_size=100)
    assert np.array_equal(got[0], ref[0])
    assert_fp32_distances_close(got[1], ref[1], x.shape[1])


def test_fp32_distance_tolerance_is_tight():
    """The derived bound is the rounding of two float32 sums carried through the
    square root (≈ 2γ_dim/d), not a loose guess: a neighbour of another distance is
    far outside it."""
    d = np.array([0.5, 1.0, 1.4], np.float32)
    bound = fp32_distance_tolerance(d, d, 24)
    carried = 2 * 24 * U32 / d
    assert np.all(bound >= carried) and np.all(bound <= 1.5 * carried + 2.0**-22 * d)
    assert np.all(bound < 1e-5)
