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


#: unit roundoff of float32
U32 = 2.0**-24


def fp32_distance_tolerance(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """Largest |a − b| between two float32 distances of the same pair of unit vectors
    when the two inner products were summed in different orders (another BLAS
    kernel, block shape or CPU), derived from the floating-point error bounds.

    * Each float32 inner product of dimension ``dim`` is within
      γ_dim·Σ|xᵢyᵢ| ≤ γ_dim·‖x‖‖y‖ of the exact one, whatever the order of the
      sum (Higham 2002, "Accuracy and Stability of Numerical Algorithms", §3.1;
      γₙ = n·u/(1 − n·u), u = 2⁻²⁴), with ‖x‖‖y‖ ≤ 1 + 2⁻¹⁶ for vectors
      normalised in float32: two of them differ by Δs ≤ 2γ_dim(1 + 2⁻¹⁶).
    * p = 2 − 2s is rounded once (at most u·p), so Δp ≤ 2Δs + u(p_a + p_b).
    * |√p_a − √p_b| = Δp / (√p_a + √p_b), and never more than √Δp (near 0).
    * Each square root is within 1 ulp (≤ 2⁻²³·d) of the true one: torch's CPU
      ``sqrt`` is not correctly rounded everywhere.

    Args:
        a, b: the two distance arrays (same shape).
        dim: the vectors' dimension.

    Returns:
        The bound per element.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    gamma = dim * U32 / (1 - dim * U32)
    delta_p = 4 * gamma * (1 + 2.0**-16) + U32 * (a * a + b * b)
    with np.errstate(divide="ignore", invalid="ignore"):
        through_sqrt = np.minimum(delta_p / (a + b), np.sqrt(delta_p))
    return np.where(a + b > 0, through_sqrt, np.sqrt(delta_p)) + 2.0**-22 * np.maximum(a, b)


def assert_fp32_distances_close(got: np.ndarray, ref: np.ndarray, dim: int) -> None:
    """Assert ``got`` and ``ref`` agree within :func:`fp32_distance_tolerance`."""
    bound = fp32_distance_tolerance(got, ref, dim)
    excess = np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64)) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, (
        f"distance {got[worst]!r} vs {ref[worst]!r} at {worst}: more than the derived "
        f"rounding bound {bound[worst]:.3g} apart")


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
