"""Reduced-precision matrix product with an exact float32 re-rank.

A bf16 or fp16 matrix product runs several times faster than float32 on GPUs
(tensor cores), but its similarities ``s̃`` are only close to the float32 ones
``s``. For unit vectors the error is bounded (Higham 2002, "Accuracy and
Stability of Numerical Algorithms", §3.1): with unit roundoff ``u`` of the
reduced format (2⁻⁸ for bf16, 2⁻¹¹ for fp16),

* rounding the inputs changes each product by at most ``(2u + u²)|xᵢyᵢ|``,
  and ``Σ|xᵢyᵢ| ≤ ‖x‖‖y‖ = 1`` (Cauchy–Schwarz);
* float32 accumulation of d terms adds at most ``γ_d ≈ d·2⁻²⁴``;
* rounding the result to the reduced format adds at most ``u``, and a
  split-K reduction done in the reduced format (allowed by cuBLAS) at most
  another ``u``;
* fp16 has a narrow exponent range: components below 2⁻¹⁴ become subnormal
  with an absolute error up to 2⁻²⁵, which adds at most ``2·√d·2⁻²⁵``.

So ``|s̃ − s| ≤ ε`` with ``ε = 5u + 2·d·2⁻²⁴ (+ √d·2⁻²⁴ for fp16)``, a
deliberately generous bound.

**Why the re-ranked answer is the exact one.** Let ``t̃`` be the k-th largest
``s̃`` of a row and ``t`` the k-th largest ``s``. Any true top-k neighbour
``j`` has ``s_j ≥ t``. The k elements with ``s̃ ≥ t̃`` all have ``s ≥ t̃ − ε``,
so ``t ≥ t̃ − ε``, and therefore ``s̃_j ≥ s_j − ε ≥ t − ε ≥ t̃ − 2ε``. Every
element with ``s̃ ≥ t̃ − 2ε`` is kept as a candidate; their similarities are
recomputed in float32 and selected exactly (ties by position). The true top k,
including every element tied with the k-th, is among the candidates, so the
result equals the float32 answer. Keeping extra candidates never changes the
answer, only the cost, so each query block keeps as many as its neediest row.
"""

from __future__ import annotations

import math

import torch

from vo_similarity.neighbours.selection import topk_exact

__all__ = ["error_bound", "reduced_precision_dtype", "rerank_topk"]

_FORMATS: dict[str, tuple[torch.dtype, float]] = {
    "bf16": (torch.bfloat16, 2.0**-8),
    "fp16": (torch.float16, 2.0**-11),
}

#: Gathered candidate vectors held at once by the re-rank, in bytes.
RERANK_BYTES = 256 * 2**20


def error_bound(precision: str, dim: int) -> float:
    """Bound ``ε`` on ``|s̃ − s|`` for unit vectors of dimension ``dim``."""
    if precision not in _FORMATS:
        raise ValueError(f"unknown reduced precision {precision!r}; use one of {sorted(_FORMATS)}")
    u = _FORMATS[precision][1]
    eps = 5 * u + 2 * dim * 2.0**-24
    if precision == "fp16":
        eps += math.sqrt(dim) * 2.0**-24
    return eps


def reduced_precision_dtype(precision: str, dim: int) -> tuple[torch.dtype, float]:
    """The torch dtype of ``precision`` and its error bound at dimension ``dim``."""
    eps = error_bound(precision, dim)
    return _FORMATS[precision][0], eps


def _exact_candidates(queries: torch.Tensor, database: torch.Tensor,
                      columns: torch.Tensor) -> torch.Tensor:
    """Float32 inner products of each query with its candidate columns."""
    b, m = columns.shape
    rows_per_step = max(1, RERANK_BYTES // max(1, m * database.shape[1] * 4))
    out = torch.empty((b, m), dtype=torch.float32, device=queries.device)
    for r0 in range(0, b, rows_per_step):
        r1 = min(b, r0 + rows_per_step)
        gathered = database[columns[r0:r1]]                      # [r, m, d]
        out[r0:r1] = torch.bmm(gathered, queries[r0:r1].unsqueeze(2)).squeeze(2)
    return out


def rerank_topk(queries: torch.Tensor, database: torch.Tensor, approx: torch.Tensor,
                k: int, *, eps: float, query_offset: int, column_offset: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k from reduced-precision similarities ``approx``.

    Args:
        queries: ``[b, d]`` float32 query vectors.
        database: ``[n, d]`` float32 database vectors of this column block.
        approx: ``[b, n]`` float32 reduced-precision similarities, self ``-inf``.
        k: neighbours to keep, ``k <= n``.
        eps: the bound of :func:`error_bound`.
        query_offset: global position of the first query.
        column_offset: global position of the first database row.

    Returns:
        ``(values, positions)``, ``[b, k]``: exact float32 similarities and
        global positions, best first, ties by smaller position.
    """
    b, n = approx.shape
    kth = torch.topk(approx, k, dim=1, sorted=False).values.amin(dim=1)
    counts = (approx >= (kth - 2 * eps).unsqueeze(1)).sum(dim=1)
    m = min(n, int(counts.max()))
    _, columns = torch.topk(approx, m, dim=1, sorted=False)
    exact = _exact_candidates(queries, database, columns)
    positions = columns + column_offset
    own = torch.arange(query_offset, query_offset + b, device=approx.device).unsqueeze(1)
    exact = exact.masked_fill(positions == own, -torch.inf)
    return topk_exact(exact, positions, k)
