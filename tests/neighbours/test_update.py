"""Neighbour lists updated after images were added and removed equal a full
recomputation (vo_similarity.neighbours.update)."""

from __future__ import annotations

import numpy as np
import pytest

from vo_similarity.neighbours.search import find_neighbours
from vo_similarity.neighbours.update import update_neighbours

from .conftest import assert_fp32_distances_close, clustered, exact_grid, fp32_distance_tolerance


def _full(x, ids, k):
    return find_neighbours(x, ids, k, backend="torch", device="cpu", block_size=64)


def _assert_same_up_to_near_ties(got, want, x, ids):
    """Same lists, except where two neighbours' distances tie within the derived
    float32 bound: which of them comes first then depends on rounding (the
    engine's own order there comes from its float32 products)."""
    assert_fp32_distances_close(got.distances, want[1], x.shape[1])
    row_of = {int(i): r for r, i in enumerate(ids)}
    for r, c in np.argwhere(got.neighbour_ids != want[0]):
        a, b = (x[row_of[int(v)]].astype(np.float64) for v in (got.neighbour_ids[r, c],
                                                                  want[0][r, c]))
        q = x[r].astype(np.float64)
        d = [np.sqrt(max(0.0, 2 - 2 * float(q @ v))) for v in (a, b)]
        assert abs(d[0] - d[1]) <= 2 * fp32_distance_tolerance(d[0], d[1], x.shape[1]), (r, c)


def _scenario(x, ids, old_rows, k_old, k, **kw):
    """Stored lists over ``old_rows``, then the update to all rows; and the truth."""
    old_ids, old_dist = _full(x[old_rows], ids[old_rows], k_old)
    got = update_neighbours(x, ids, ids[old_rows], old_ids, old_dist, k, block_size=37, **kw)
    want = _full(x, ids, k)
    return got, want, (old_ids, old_dist)


@pytest.mark.parametrize(("removed", "k"), [(0, 60), (3, 20), (20, 60)])
def test_fifty_added_to_five_hundred_equal_a_full_recomputation(removed, k):
    """Exact products (exact_grid): ids and distances equal bit for bit. Three
    removed images reach a few lists (merged, those recomputed); twenty reach
    most of them (the engine computes all)."""
    rng = np.random.default_rng(removed)
    x = exact_grid(550 + removed, 16, seed=1)
    ids = rng.permutation(10_000)[:len(x)]
    old_rows = np.arange(500 + removed)  # the last 50 are new
    old_ids, old_dist = _full(x[old_rows], ids[old_rows], k)
    gone = rng.choice(500 + removed, removed, replace=False)
    keep = np.setdiff1d(np.arange(len(x)), gone)
    got = update_neighbours(x[keep], ids[keep], ids[old_rows], old_ids, old_dist, k,
                            block_size=37)
    want = _full(x[keep], ids[keep], k)
    np.testing.assert_array_equal(got.neighbour_ids, want[0])
    np.testing.assert_array_equal(got.distances, want[1])
    assert not np.isin(got.neighbour_ids, ids[gone]).any()
    assert (got.added, got.removed) == (50, removed)
    held = np.isin(old_ids, ids[gone]).any(axis=1).sum()  # lists that held a removed image
    assert got.recomputed == (50 + held if 50 + held <= len(keep) // 2 else len(keep))
    if removed == 3:
        assert 0 < held and got.recomputed < len(keep)


def test_only_the_rows_that_must_change_do():
    rng = np.random.default_rng(7)
    x = exact_grid(550, 16, seed=2)
    ids = rng.permutation(550)
    old_rows = np.arange(500)
    got, want, (old_ids, old_dist) = _scenario(x, ids, old_rows, 40, 40)
    # rows whose list really differs from the stored one, found independently
    stored = {int(i): (a, d) for i, a, d in zip(ids[old_rows], old_ids, old_dist)}
    differs = np.array([
        int(i) not in stored or not (np.array_equal(stored[int(i)][0], a)
                                     and np.array_equal(stored[int(i)][1], d))
        for i, a, d in zip(ids, want[0], want[1])])
    np.testing.assert_array_equal(got.changed, differs)
    assert got.recomputed == 50  # nothing was removed: only the new rows in full
    assert 0 < differs[:500].sum() < 500  # some old lists gained a new image, not all


def test_lists_that_grow_with_the_archive():
    """Fewer images than k at first: the stored lists hold every other image."""
    x = exact_grid(50, 16, seed=3)
    ids = np.arange(50)
    got, want, _ = _scenario(x, ids, np.arange(30), 40, 40)  # 29 each, then 40
    np.testing.assert_array_equal(got.neighbour_ids, want[0])
    np.testing.assert_array_equal(got.distances, want[1])
    assert got.recomputed == 20  # merging was enough for the old rows


def test_a_larger_k_than_stored_recomputes_the_cut_lists():
    x = exact_grid(200, 16, seed=4)
    ids = np.arange(200)[::-1].copy()
    got, want, _ = _scenario(x, ids, np.arange(180), 10, 25)
    np.testing.assert_array_equal(got.neighbour_ids, want[0])
    np.testing.assert_array_equal(got.distances, want[1])
    assert got.recomputed == 200


def test_general_vectors_agree_within_the_rounding_bound():
    x = clustered(800, 24, seed=5)
    ids = np.arange(800)
    got, want, _ = _scenario(x, ids, np.arange(740), 50, 50)
    _assert_same_up_to_near_ties(got, want, x, ids)


def test_nothing_new_changes_nothing():
    x = exact_grid(120, 16, seed=6)
    ids = np.arange(120)
    got, _, (old_ids, old_dist) = _scenario(x, ids, np.arange(120), 30, 30)
    assert got.added == got.removed == got.recomputed == 0 and not got.changed.any()
    np.testing.assert_array_equal(got.neighbour_ids, old_ids)
    np.testing.assert_array_equal(got.distances, old_dist)


def test_stored_lists_must_match_their_rows():
    x = exact_grid(20, 16)
    with pytest.raises(ValueError, match="do not match"):
        update_neighbours(x, np.arange(20), np.arange(10), np.zeros((9, 3)), np.zeros((9, 3)), 3)


def test_near_ties_keep_the_engines_order():
    """Similarities an ulp apart round to equal distances (d ~ 1.3 here): the
    merge keeps the stored lists' order there, and a new image tied with a
    stored one goes by its similarity, so that the lists differ from a full
    recomputation only where the full one's own float32 rounding decides."""
    x = clustered(2600, 256, clusters=100, spread=0.8, seed=8)
    ids = np.random.default_rng(3).permutation(20_000)[:2600]
    got, want, (old_ids, _) = _scenario(x, ids, np.arange(2500), 100, 100)
    ties = (want[1][:, 1:] == want[1][:, :-1]).any(axis=1)
    assert ties.sum() >= 3  # the case this test is about occurs
    _assert_same_up_to_near_ties(got, want, x, ids)
    differ = (got.neighbour_ids != want[0]).any(axis=1)
    assert differ.sum() <= ties.sum()  # only rows with ties can differ at all
    for r in range(2500):  # the stored images keep their stored order in every list
        stored = old_ids[r].tolist()
        kept = [i for i in got.neighbour_ids[r].tolist() if i in set(stored)]
        assert kept == stored[:len(kept)], r
