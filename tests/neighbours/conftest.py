"""Test data for the neighbour engine: clustered unit vectors and exact-grid vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


def clustered(n: int, dim: int, *, clusters: int = 8, spread: float = 0.35,
              seed: int = 0) -> np.ndarray:
    """Unit vectors drawn around ``clusters`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _four_squares(limit: int) -> dict[int, tuple[int, int, int, int]]:
    """For every r <= limit, four integers whose squares sum to r (Lagrange)."""
    pairs: dict[int, tuple[int, int]] = {}
    top = int(np.sqrt(limit)) + 1
    for a in range(top):
        for b in range(a, top):
            pairs.setdefault(a * a + b * b, (a, b))
    out = {}
    for r in range(limit + 1):
        for p, ab in pairs.items():
            if p <= r and (r - p) in pairs:
                out[r] = ab + pairs[r - p]
                break
    return out


def exact_grid(n: int, dim: int = 16, *, seed: int = 0) -> np.ndarray:
    """Unit vectors whose float32 inner products are exact in any summation order.

    Each vector is an integer vector of squared norm 64² = 4096 divided by 64:
    entries are exact in bf16 and fp16, every inner product is an integer over
    4096, so float32 accumulation is exact, while a bf16 or fp16 *result*
    (8 or 11 significant bits) is not. Inner products take few distinct values,
    so there are many exact ties.
    """
    rng = np.random.default_rng(seed)
    squares = _four_squares(4096)
    rows = []
    while len(rows) < n:
        head = rng.integers(-16, 17, dim - 4)
        rest = 4096 - int(head @ head)
        if rest < 0:
            continue
        tail = np.array(squares[rest]) * rng.choice([-1, 1], 4)
        v = np.concatenate([head, tail])
        rows.append(rng.permutation(v))
    return (np.array(rows, dtype=np.float64) / 64).astype(np.float32)


def reference_neighbours(x: np.ndarray, ids: np.ndarray, k: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Brute force in float64: rank by similarity, ties by smaller id, self excluded."""
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    out_ids = np.empty((len(x), k), dtype=np.int64)
    out_sims = np.empty((len(x), k))
    for i in range(len(x)):
        others = np.flatnonzero(np.arange(len(x)) != i)
        order = np.lexsort((ids[others], -sims[i, others]))[:k]
        out_ids[i] = ids[others[order]]
        out_sims[i] = sims[i, others[order]]
    dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * out_sims.astype(np.float32)))
    return out_ids, dist.astype(np.float32)


@pytest.fixture(scope="session")
def clustered_data() -> tuple[np.ndarray, np.ndarray]:
    x = clustered(900, 24)
    ids = np.random.default_rng(1).permutation(5000)[:900]  # unsorted, with gaps
    return x, ids


@pytest.fixture(scope="session")
def grid_data() -> tuple[np.ndarray, np.ndarray]:
    x = exact_grid(400)
    ids = np.random.default_rng(2).permutation(400) * 3 + 7
    return x, ids
