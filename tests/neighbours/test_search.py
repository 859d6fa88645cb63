import numpy as np
import pytest

from vo_similarity.neighbours.backends import cuml_usable
from vo_similarity.neighbours.search import find_neighbours

from .conftest import (
    assert_fp32_distances_close,
    clustered,
    fp32_distance_tolerance,
    reference_neighbours,
)

BACKENDS = [
    "torch",
    "sklearn",
    pytest.param("cuml", marks=pytest.mark.skipif(
        not cuml_usable(), reason="cuML is not installed or finds no usable GPU")),
]


def assert_same_sets_up_to_ties(ids_a, dist_a, ids_b, dist_b, dim):
    """Same neighbour sets per row, except for elements tied with the k-th distance
    within rounding: both distances of a pair lie within the derived float32 bound of
    the true one, so an element in one set only is within twice that of the k-th."""
    assert_fp32_distances_close(dist_a, dist_b, dim)
    for row in range(len(ids_a)):
        kth = max(dist_a[row, -1], dist_b[row, -1])
        differ = set(ids_a[row]) ^ set(ids_b[row])
        lookup = dict(zip(ids_a[row], dist_a[row])) | dict(zip(ids_b[row], dist_b[row]))
        assert all(abs(lookup[i] - kth) <= 2 * fp32_distance_tolerance(lookup[i], kth, dim)
                   for i in differ), f"row {row}: {differ}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_with_float64_reference(clustered_data, backend):
    x, ids = clustered_data
    got_ids, got_dist = find_neighbours(x, ids, 25, backend=backend, block_size=128)
    ref_ids, ref_dist = reference_neighbours(x, ids, 25)
    assert got_ids.dtype == np.int32 and got_dist.dtype == np.float32
    assert got_ids.shape == (len(x), 25)
    assert_same_sets_up_to_ties(got_ids, got_dist, ref_ids, ref_dist, x.shape[1])
    assert np.all(np.diff(got_dist, axis=1) >= 0), "not in rank order"


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_never_appears_even_with_duplicates(backend):
    x = clustered(120, 8, seed=3)
    x = np.concatenate([x, x, x])                      # every vector three times
    ids = np.random.default_rng(4).permutation(len(x))
    got, dist = find_neighbours(x, ids, 10, backend=backend, block_size=50)
    assert not np.any(got == ids[:, None])
    # the two copies of each vector come first, at distance 0, in id order
    copies = {i: sorted(set(ids[np.flatnonzero((x == x[r]).all(1))]) - {i})
              for r, i in enumerate(ids)}
    for r, i in enumerate(ids):
        assert got[r, :2].tolist() == copies[i]
        # x·x = 1 only to within γ_8 in float32, and √(2 − 2s) magnifies that near 0
        assert np.all(dist[r, :2] <= fp32_distance_tolerance(0.0, 0.0, x.shape[1]))


def test_exact_ties_broken_by_smaller_id(grid_data):
    x, ids = grid_data
    got_ids, got_dist = find_neighbours(x, ids, 60, backend="torch", block_size=64,
                                        column_block_size=90)
    ref_ids, ref_dist = reference_neighbours(x, ids, 60)
    assert np.array_equal(got_ids, ref_ids)
    # exact-grid products are exact in any order; only the square root rounds, and
    # torch's is within 1 ulp where numpy's (the reference) is correctly rounded
    np.testing.assert_allclose(got_dist, ref_dist, rtol=2.0**-22)
    tied = np.diff(got_dist, axis=1) == 0
    assert tied.sum() > 200, "the grid data should contain many exact ties"
    assert np.all(np.diff(got_ids, axis=1)[tied] > 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [59, 60, 1000])
def test_k_at_least_n_returns_all_others(backend, k):
    x = clustered(60, 6, seed=5)
    ids = np.arange(100, 160)
    got, _ = find_neighbours(x, ids, k, backend=backend, block_size=7)
    assert got.shape == (60, 59)
    for r in range(60):
        assert sorted(got[r]) == sorted(set(ids) - {ids[r]})


@pytest.mark.parametrize("blocks", [(3, 40), (17, 50), (64, 399), (1000, 100000)])
def test_block_sizes_do_not_change_the_result(grid_data, blocks):
    """Bit for bit on data whose inner products are exact in any summation order."""
    x, ids = grid_data
    base = find_neighbours(x, ids, 30, backend="torch", block_size=256)
    got = find_neighbours(x, ids, 30, backend="torch", block_size=blocks[0],
                          column_block_size=blocks[1])
    assert np.array_equal(got[0], base[0])
    np.testing.assert_array_equal(got[1], base[1])


def test_block_sizes_on_generic_data_change_only_rounding(clustered_data):
    """BLAS may round differently for different block shapes: same ids, distances
    within the derived rounding bound."""
    x, ids = clustered_data
    base = find_neighbours(x, ids, 30, backend="torch", block_size=256)
    got = find_neighbours(x, ids, 30, backend="torch", block_size=13, column_block_size=200)
    assert np.array_equal(got[0], base[0])
    assert_fp32_distances_close(got[1], base[1], x.shape[1])


def test_writes_into_given_arrays(tmp_path, clustered_data):
    x, ids = clustered_data
    out_ids = np.lib.format.open_memmap(tmp_path / "i.npy", "w+", np.int32, (len(x), 5))
    out_dist = np.lib.format.open_memmap(tmp_path / "d.npy", "w+", np.float32, (len(x), 5))
    find_neighbours(x, ids, 5, out_ids=out_ids, out_dist=out_dist)
    ref = find_neighbours(x, ids, 5)
    assert np.array_equal(np.load(tmp_path / "i.npy"), ref[0])
    with pytest.raises(ValueError, match="out_ids must be int32 of shape"):
        find_neighbours(x, ids, 6, out_ids=out_ids)


@pytest.mark.parametrize("change, message", [
    (lambda x, i: (x * 2, i), "not unit vectors"),
    (lambda x, i: (np.where(x == x[0, 0], np.nan, x), i), "NaN"),
    (lambda x, i: (x, np.zeros_like(i)), "not unique"),
    (lambda x, i: (x, -i - 1), "between 0 and"),
    (lambda x, i: (x, i[:-1]), "must have shape"),
    (lambda x, i: (x[:1], i[:1]), "at least 2 embeddings"),
])
def test_bad_input_is_refused(change, message):
    x, ids = clustered(10, 4), np.arange(10)
    bad_x, bad_ids = change(x, ids)
    with pytest.raises(ValueError, match=message):
        find_neighbours(bad_x, bad_ids, 3)


def test_unknown_options_are_refused():
    x, ids = clustered(10, 4), np.arange(10)
    with pytest.raises(ValueError, match="unknown backend"):
        find_neighbours(x, ids, 3, backend="annoy")
    with pytest.raises(ValueError, match="unknown precision"):
        find_neighbours(x, ids, 3, precision="int8")
    with pytest.raises(ValueError, match="needs the torch backend"):
        find_neighbours(x, ids, 3, backend="sklearn", precision="bf16")
