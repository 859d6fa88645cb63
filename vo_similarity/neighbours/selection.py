"""Exact top-k selection with a deterministic tie-break, on torch tensors.

Every function here ranks candidates by *decreasing similarity, then increasing
position*. Positions are column indices into the database after it has been
sorted by image id (see :mod:`vo_similarity.neighbours.search`), so "smaller
position" means "smaller image id" and the result does not depend on the order
in which a backend happens to visit tied elements.

Two tools make that exact and fast:

* :func:`order_keys` packs a float32 similarity and a position into one int64
  whose integer order is the wanted order, so one ``torch.topk``/``torch.sort``
  on the keys is an exact, tie-aware selection (used on small candidate sets
  and on the rare rows with ties at the k-th value).
* :func:`topk_block` selects from a large ``[b, n]`` similarity block with
  the backend's fast ``torch.topk`` and repairs only the rows where it could
  be ambiguous (a tie at the k-th value, or ties inside the selection).
"""

from __future__ import annotations

import torch

__all__ = ["order_keys", "topk_block", "topk_exact"]

_LOW_MASK = (1 << 32) - 1


def order_keys(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Int64 keys ordered like (value descending, position ascending).

    The float32 bit pattern is mapped to an int32 with the same order as the
    float (negative floats have their magnitude bits flipped), shifted into the
    high 32 bits; the low 32 bits hold ``2**32 - 1 - position``.

    Args:
        values: float32 similarities (finite or ``-inf``; no NaN).
        positions: non-negative integer positions, same shape or broadcastable.

    Returns:
        int64 tensor: a larger key means a better neighbour.
    """
    bits = (values.to(torch.float32) + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(torch.int64)
    return (ordered << 32) + (_LOW_MASK - positions.to(torch.int64))


def _sorted_by_key(values: torch.Tensor, positions: torch.Tensor, k: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    keys = order_keys(values, positions)
    if k < keys.shape[1]:
        keys, order = torch.topk(keys, k, dim=1, sorted=True)
    else:
        keys, order = torch.sort(keys, dim=1, descending=True)
    return torch.gather(values, 1, order), torch.gather(positions, 1, order)


def topk_exact(values: torch.Tensor, positions: torch.Tensor, k: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of each row, exact, ordered, ties broken by smaller position.

    Meant for candidate sets of a few thousand columns (merging partial
    results, re-ranking); for whole similarity blocks use :func:`topk_block`.

    Args:
        values: ``[b, m]`` float32 similarities.
        positions: ``[b, m]`` int64 positions of those values.
        k: how many to keep; at most ``m``.

    Returns:
        ``(values, positions)``, each ``[b, k]``, best first.
    """
    return _sorted_by_key(values, positions.expand_as(values), k)


def topk_block(block: torch.Tensor, k: int, *, column_offset: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of every row of a similarity block, ties by smaller column.

    ``torch.topk(k + 1)`` gives the right *set* whenever the k-th value is
    strictly larger than the (k+1)-th; a row with a tie at that boundary (e.g.
    duplicated vectors) is selected again from its full row with
    :func:`order_keys`. Rows with equal values inside the selection are then
    put in (value descending, column ascending) order.

    Args:
        block: ``[b, n]`` float32 similarities; excluded entries hold ``-inf``.
        k: neighbours per row, ``k <= n``.
        column_offset: global position of column 0 of the block.

    Returns:
        ``(values, positions)``: ``[b, k]`` float32 and int64 global positions.
    """
    b, n = block.shape
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} columns of the block")
    if k == 0:
        empty = block.new_empty((b, 0))
        return empty, empty.to(torch.int64)
    top_vals, cols = torch.topk(block, min(k + 1, n), dim=1, sorted=True)
    if n > k:
        unsure = top_vals[:, k - 1] == top_vals[:, k]
        top_vals, cols = top_vals[:, :k], cols[:, :k]
        if bool(unsure.any()):
            rows = unsure.nonzero().squeeze(1)
            all_cols = torch.arange(n, device=block.device).expand(len(rows), n)
            fixed_vals, fixed_cols = _sorted_by_key(block[rows], all_cols, k)
            top_vals = top_vals.index_copy(0, rows, fixed_vals)
            cols = cols.index_copy(0, rows, fixed_cols)
    # The set is exact; order equal values inside it by column.
    tied = (top_vals[:, 1:] == top_vals[:, :-1]).any(dim=1)
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        fixed_vals, fixed_cols = _sorted_by_key(top_vals[rows], cols[rows], k)
        top_vals = top_vals.index_copy(0, rows, fixed_vals)
        cols = cols.index_copy(0, rows, fixed_cols)
    return top_vals, cols + column_offset
