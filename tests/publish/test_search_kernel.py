"""The search service's kernel without DaCHS: the vector file, top n, the query."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vo_similarity.publish import search_kernel as sk
from vo_similarity.publish.vectors import write_vector_file


def _reference_top(scores: np.ndarray, n: int, exclude=()) -> np.ndarray:
    s = scores.astype(np.float64).copy()
    s[list(exclude)] = -np.inf
    order = np.lexsort((np.arange(len(s)), -s))
    return order[:n][np.isfinite(s[order[:n]])]


@pytest.mark.parametrize("block_rows", [1, 7, 64, 10_000])
@pytest.mark.parametrize("n", [1, 5, 50, 300])
def test_top_n_equals_a_full_sort(block_rows, n):
    rng = np.random.default_rng(n + block_rows)
    x = rng.normal(size=(257, 8)).astype(np.float32)
    q = rng.normal(size=8).astype(np.float32)
    exclude = rng.choice(257, 9, replace=False)
    rows, scores = sk.top_n(x, q, n, exclude, block_rows=block_rows)
    exact = x.astype(np.float64) @ q.astype(np.float64)
    # float32 products in any order (BLAS picks another kernel per block
    # shape): within gamma_8 * sum |x_i q_i| of the exact ones (Higham 2002, 3.1)
    gamma = 8 * 2.0**-24 / (1 - 8 * 2.0**-24)
    bound = gamma * (np.abs(x.astype(np.float64)) @ np.abs(q.astype(np.float64)))
    expected = _reference_top(exact, n, exclude)
    assert len(rows) == len(expected) == min(n, 257 - 9)
    for got, want in zip(rows, expected, strict=True):
        assert got == want or abs(exact[got] - exact[want]) <= bound[got] + bound[want]
    assert (np.abs(scores - exact[rows]) <= bound[rows]).all()


def test_ties_are_broken_by_row_whatever_the_blocks():
    x = np.ones((40, 4), np.float32)  # every score ties
    for block_rows in (3, 16, 40):
        rows, _ = sk.top_n(x, np.ones(4, np.float32), 10, [2, 5], block_rows=block_rows)
        assert rows.tolist() == [0, 1, 3, 4, 6, 7, 8, 9, 10, 11]


def test_vector_file_round_trip_sorted_and_normalised(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.permutation(1000)[:300].astype(np.int32)
    vectors = rng.normal(size=(300, 12)).astype(np.float32) * 5
    path = tmp_path / "m1-x.vectors"
    assert write_vector_file(path, ids, vectors, block_rows=64) == (300, 12)
    got_ids, got = sk.read_vector_file(str(path))
    order = np.argsort(ids)
    np.testing.assert_array_equal(got_ids, ids[order])
    np.testing.assert_allclose(got, vectors[order] / np.linalg.norm(vectors[order], axis=1,
                                                                     keepdims=True), rtol=1e-6)
    assert got.flags.c_contiguous and got.dtype == np.float32


def test_vector_file_refuses_bad_embeddings(tmp_path):
    bad = np.ones((3, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_vector_file(tmp_path / "m1.vectors", np.arange(3), bad)
    with pytest.raises(ValueError, match="not unique"):
        write_vector_file(tmp_path / "m1.vectors", np.array([1, 1, 2]), np.ones((3, 4)))
    assert not (tmp_path / "m1.vectors").exists()


def test_the_cache_follows_a_replaced_file(tmp_path):
    path = tmp_path / "m1-a.vectors"
    write_vector_file(path, np.arange(5), np.eye(5, 3, dtype=np.float32) + 1)
    first = sk.open_vectors(str(path))
    assert sk.open_vectors(str(path)) is first  # kept between requests
    write_vector_file(path, np.arange(7), np.ones((7, 3), np.float32))  # os.replace
    second = sk.open_vectors(str(path))
    assert second is not first and len(second.ids) == 7


def test_rows_of_unknown_ids_raise(tmp_path):
    path = tmp_path / "m1-b.vectors"
    write_vector_file(path, np.array([2, 4, 9]), np.ones((3, 2), np.float32))
    vf = sk.VectorFile(str(path))
    assert vf.rows_of([9, 2]).tolist() == [2, 0]
    for missing in ([3], [10], [2, 5]):
        with pytest.raises(KeyError):
            vf.rows_of(missing)


def test_kernel_imports_nothing_but_numpy_and_the_standard_library():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(sk.__file__).read_text(encoding="utf-8"))
    names = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for a in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert names <= {"__future__", "json", "math", "os", "threading", "typing", "numpy"}, names
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert os.path.basename(sk.__file__) == "search_kernel.py"
