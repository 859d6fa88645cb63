"""The search's first pass over one-byte codes: its error bound, and that the
top n it gives is the top n of the float64 scores (search_kernel.Coded)."""

from __future__ import annotations

import numpy as np
import pytest

from vo_similarity.publish import search_kernel as sk
from vo_similarity.publish.vectors import write_vector_file


def _units(rng, n: int, dim: int, *, skew: float = 0.0) -> np.ndarray:
    """Unit vectors; ``skew`` > 0 makes a few dimensions dominate, as in real
    embeddings (per-dimension scales then differ widely)."""
    x = rng.normal(size=(n, dim)) * np.exp(-skew * np.arange(dim) / dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _coded(x: np.ndarray) -> sk.Coded:
    return sk.encode(x, sk.code_scales(np.abs(x).max(axis=0)))


def _reference(x: np.ndarray, q: np.ndarray, n: int, exclude=()) -> np.ndarray:
    s = x.astype(np.float64) @ q.astype(np.float64)
    s[list(exclude)] = -np.inf
    order = np.lexsort((np.arange(len(s)), -s))[:n]
    return order[np.isfinite(s[order])]


def test_codes_decode_within_their_stated_error():
    rng = np.random.default_rng(0)
    for skew in (0.0, 6.0):
        x = _units(rng, 500, 32, skew=skew)
        coded = _coded(x)
        assert coded.codes.dtype == np.uint8 and coded.codes.min() >= 1
        decoded = coded.scales.astype(np.float64) * (coded.codes.astype(np.float64) - 128)
        residual = np.linalg.norm(x.astype(np.float64) - decoded, axis=1)
        assert (residual <= coded.errors).all()
        # rounded up by one float32 step, not more
        assert (np.nextafter(residual.astype(np.float32), np.float32(0)) <= coded.errors).all()


@pytest.mark.parametrize("skew", [0.0, 6.0])
def test_the_bound_holds_for_the_worst_query_of_each_row(skew):
    """A query along a row's own residual makes that row's approximation as wrong
    as it can be (Cauchy-Schwarz is tight there): the bound must still cover it."""
    rng = np.random.default_rng(1)
    x = _units(rng, 400, 64, skew=skew)
    coded = _coded(x)
    decoded = coded.scales.astype(np.float64) * (coded.codes.astype(np.float64) - 128)
    queries = [rng.normal(size=64) for _ in range(20)]
    queries += [(x[i] - decoded[i]) for i in range(0, 400, 20)]
    queries += [x[i].astype(np.float64) * 3 for i in range(5)]  # not unit length
    for q in queries:
        q = q.astype(np.float32)
        bounds = sk._Bounds(coded, q)
        approx = sk._first_pass(coded.codes, bounds.query, np.empty(400, np.float32),
                                np.empty((7, 64), np.float32)) - bounds.shift
        exact = x.astype(np.float64) @ q.astype(np.float64)
        err = np.abs(approx.astype(np.float64) - exact)
        assert (err <= bounds.bound(slice(None))).all()


@pytest.mark.parametrize("block_rows", [1, 100, 10_000])
@pytest.mark.parametrize("n", [1, 7, 60, 1000])
def test_coded_top_n_is_the_exact_top_n(block_rows, n):
    rng = np.random.default_rng(n + block_rows)
    x = _units(rng, 900, 24, skew=4.0)
    coded = _coded(x)
    for trial in range(4):
        q = rng.normal(size=24).astype(np.float32)
        exclude = rng.choice(900, 11, replace=False)
        rows, scores = sk.top_n(x, q, n, exclude, block_rows=block_rows, coded=coded)
        want = _reference(x, q, n, exclude)
        np.testing.assert_array_equal(rows, want)
        exact = x[rows].astype(np.float64) @ q.astype(np.float64)
        np.testing.assert_allclose(scores, exact, rtol=1e-6, atol=1e-7)


def test_near_duplicates_and_ties_are_ranked_as_the_scan_ranks_them():
    rng = np.random.default_rng(2)
    base = _units(rng, 1, 16)[0]
    # rows a hair apart (far inside the codes' error) and exact ties
    x = np.repeat(base[None], 300, axis=0) + rng.normal(size=(300, 16)).astype(np.float32) * 1e-5
    x[100:150] = x[100]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    coded = _coded(x)
    for n in (1, 20, 120):
        rows, _ = sk.top_n(x, base, n, [3], coded=coded)
        np.testing.assert_array_equal(rows, _reference(x, base, n, [3]))
    ones = np.full((40, 4), 0.5, np.float32)
    rows, _ = sk.top_n(ones, np.ones(4, np.float32), 10, [2, 5], coded=_coded(ones))
    assert rows.tolist() == [0, 1, 3, 4, 6, 7, 8, 9, 10, 11]


def test_fewer_rows_than_asked_and_all_excluded():
    rng = np.random.default_rng(3)
    x = _units(rng, 30, 8)
    coded = _coded(x)
    q = rng.normal(size=8).astype(np.float32)
    rows, _ = sk.top_n(x, q, 1000, np.arange(0, 30, 2), coded=coded)
    np.testing.assert_array_equal(rows, _reference(x, q, 1000, range(0, 30, 2)))
    assert len(rows) == 15
    rows, scores = sk.top_n(x, q, 5, np.arange(30), coded=coded)
    assert len(rows) == len(scores) == 0


def test_the_file_carries_its_codes_and_older_files_still_serve(tmp_path):
    rng = np.random.default_rng(4)
    x = _units(rng, 700, 20, skew=3.0)
    ids = rng.permutation(5000)[:700]
    coded_path, plain_path = tmp_path / "m1-c.vectors", tmp_path / "m1-p.vectors"
    write_vector_file(coded_path, ids, x, block_rows=64)
    write_vector_file(plain_path, ids, x, codes=False)
    with_codes, without = sk.VectorFile(str(coded_path)), sk.VectorFile(str(plain_path))
    assert without.coded is None and with_codes.coded is not None
    assert with_codes.coded.codes.shape == (700, 20) and with_codes.coded.scales.shape == (20,)
    np.testing.assert_array_equal(with_codes.vectors, without.vectors)
    # the codes are those of the vectors as written (the served bits)
    expected = _coded(np.asarray(with_codes.vectors))
    np.testing.assert_array_equal(with_codes.coded.codes, expected.codes)
    np.testing.assert_array_equal(with_codes.coded.errors, expected.errors)
    for _ in range(5):
        q = rng.normal(size=20).astype(np.float32)
        a, b = with_codes.top_n(q, 25, [0, 9]), without.top_n(q, 25, [0, 9])
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)


def test_a_file_with_damaged_codes_is_refused(tmp_path):
    path = tmp_path / "m1-d.vectors"
    write_vector_file(path, np.arange(10), np.ones((10, 4), np.float32), codes=False)
    with open(path, "ab") as f:  # a codes record of the wrong shape, and no more
        np.lib.format.write_array(f, np.zeros((9, 4), np.uint8))
    with pytest.raises(ValueError, match="3 records"):
        sk.VectorFile(str(path))
    write_vector_file(path, np.arange(10), np.ones((10, 4), np.float32), codes=False)
    with open(path, "ab") as f:
        for arr in (np.zeros((9, 4), np.uint8), np.ones(4, np.float32), np.ones(9, np.float32)):
            np.lib.format.write_array(f, arr)
    with pytest.raises(ValueError, match="codes do not match"):
        sk.VectorFile(str(path))


def test_the_bound_covers_float32_rounding_where_the_codes_are_exact():
    """Vectors the codes represent exactly (error 0): what is left is the float32
    rounding of the first pass, which the bound must cover on its own."""
    rng = np.random.default_rng(5)
    k = rng.integers(-127, 128, size=(300, 256))
    k[0] = 127  # every dimension's peak is 127 steps of 2**-10: scales exactly 2**-10
    x = (k * 2.0**-10).astype(np.float32)
    coded = _coded(x)
    assert (coded.scales == np.float32(2.0**-10)).all() and coded.errors.max() < 1e-40
    worst = 0.0
    for _ in range(30):
        q = rng.normal(size=256).astype(np.float32)
        bounds = sk._Bounds(coded, q)
        approx = sk._first_pass(coded.codes, bounds.query, np.empty(300, np.float32),
                                np.empty((64, 256), np.float32)) - bounds.shift
        err = np.abs(approx.astype(np.float64) - x.astype(np.float64) @ q.astype(np.float64))
        assert (err <= bounds.bound(slice(None))).all()
        worst = max(worst, float(err.max()))
    assert worst > 0  # the rounding this test is about did happen
