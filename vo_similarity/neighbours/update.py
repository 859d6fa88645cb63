"""Neighbour lists after images were added or removed, without recomputing them all.

When M images join N published ones, a full recomputation costs (N + M)²
products. Most of that is known already: an old image's list is its exact top
k among the old images, and only the new images can enter it. So
:func:`update_neighbours`

1. computes the exact top k of the **new** images against all N + M, with the
   engine (:func:`vo_similarity.neighbours.blocks.knn_query_rows`);
2. for every **old** image, computes its distances to the M new ones (an
   N x M product) and merges them into its stored list: the k nearest of the
   k stored and the M new, by distance, then smaller id (near-ties: below);
3. recomputes in full only the old rows whose list cannot be merged: those
   holding an image that was removed (their (k+1)-th is not stored), and,
   when the list grows because N + M - 1 reached k, those whose stored list
   was cut at k. When that is more than half of the rows (R removed images
   reach about a fraction 1 - (1 - k/N)^R of the lists), the engine computes
   all of them instead.

Work: O(M·(N + M)) products plus O(R·(N + M)) for the R rows that held a
removed image, instead of O((N + M)²). Distances of rows that were not
recomputed are the stored float32 values; a full recomputation gives the same
ids and distances equal within the engine's rounding bound (bit for bit where
the products are exact, as ``tests/neighbours/test_update.py`` checks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from vo_similarity.neighbours.blocks import block_ranges, knn_query_rows, similarity_to_distance
from vo_similarity.neighbours.memory import empty_array
from vo_similarity.neighbours.search import check_embeddings, find_neighbours, neighbour_count

__all__ = ["NeighbourUpdate", "update_neighbours"]

LOG = logging.getLogger(__name__)


@dataclass
class NeighbourUpdate:
    """The updated lists (rows in the order of the ids given) and what changed."""

    neighbour_ids: np.ndarray  # int32 [N', k]
    distances: np.ndarray  # float32 [N', k]
    added: int
    removed: int
    recomputed: int  # rows computed in full: the new ones and those that held a removed image
    changed: np.ndarray  # bool [N']: the row differs from its stored list (new rows: True)
    #: the stored embeddings did not describe the current images: all were embedded again
    rebuilt: bool = False


def update_neighbours(embeddings: np.ndarray, ids: np.ndarray, old_ids: np.ndarray,
                      old_neighbour_ids: np.ndarray, old_distances: np.ndarray, k: int, *,
                      block_size: int = 1024, column_block_size: int = 65536,
                      progress: bool = False) -> NeighbourUpdate:
    """The exact neighbour lists of ``ids`` from the stored lists of ``old_ids``.

    Args:
        embeddings: ``[N', D]`` unit vectors of every current image (old ones
            that stay, and new ones).
        ids: ``[N']`` their image ids.
        old_ids: ``[N]`` image ids of the stored lists' rows.
        old_neighbour_ids, old_distances: the stored ``[N, k_old]`` lists
            (from :func:`.search.find_neighbours` over the old embeddings).
        k: neighbours per image wanted (``N' - 1`` when fewer).
        block_size: rows per product.
        column_block_size: database rows per similarity block.
        progress: show a progress bar.
    """
    from tqdm.auto import tqdm

    x, ids = check_embeddings(embeddings, ids)
    n = len(x)
    kk = neighbour_count(k, n)
    old_ids = np.asarray(old_ids, dtype=np.int64)
    old_nb = np.asarray(old_neighbour_ids)
    old_dist = np.asarray(old_distances, dtype=np.float32)
    if old_nb.shape != old_dist.shape or old_nb.shape[0] != len(old_ids):
        raise ValueError(f"stored lists {old_nb.shape} / {old_dist.shape} do not match "
                         f"{len(old_ids)} stored rows")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    xs = x[order]
    xt = torch.from_numpy(xs)

    kept = np.isin(old_ids, sorted_ids)
    removed_ids = old_ids[~kept]
    was_old = np.isin(sorted_ids, old_ids)
    new_pos = np.flatnonzero(~was_old)
    position_of = _positions(sorted_ids)
    # stored rows that stay, by their position among the current rows
    stay_rows = np.flatnonzero(kept)
    stay_pos = position_of(old_ids[stay_rows])
    width = old_nb.shape[1]
    complete = width >= len(old_ids) - 1  # the stored lists hold every other old image
    broken = np.zeros(len(stay_rows), dtype=bool)
    if len(removed_ids):
        removed_pos = np.isin(old_nb, removed_ids).any(axis=1)
        broken = removed_pos[stay_rows]
    if kk > width and not complete:
        broken[:] = True  # the stored lists were cut before the k now wanted
    full_pos = np.sort(np.concatenate([new_pos, stay_pos[broken]]))
    if len(full_pos) > n // 2:  # merging would save little: the engine computes them all
        LOG.info("update: %d of %d rows need computing in full; computing all", len(full_pos), n)
        nb, dist = find_neighbours(x, ids, kk, backend="torch", device="cpu",
                                   block_size=block_size, column_block_size=column_block_size,
                                   progress=progress)
        return NeighbourUpdate(nb, dist, added=len(new_pos), removed=len(removed_ids),
                               recomputed=n, changed=np.ones(n, dtype=bool))
    merge_rows, merge_pos = stay_rows[~broken], stay_pos[~broken]
    LOG.info("update: %d images (%d new, %d removed); %d rows computed in full, %d merged",
             n, len(new_pos), len(removed_ids), len(full_pos), len(merge_pos))

    out_pos = empty_array((n, kk), np.int64)
    out_dist = empty_array((n, kk), np.float32)
    changed = np.ones(n, dtype=bool)  # new and recomputed rows count as changed
    with tqdm(total=len(full_pos) + len(merge_pos), unit="img", desc="update",
              disable=not progress) as bar:
        for b0, b1 in block_ranges(len(full_pos), block_size):
            rows = torch.from_numpy(full_pos[b0:b1])
            sims, pos = knn_query_rows(xt, rows, kk, column_block_size=column_block_size)
            out_pos[full_pos[b0:b1]] = pos.numpy()
            out_dist[full_pos[b0:b1]] = similarity_to_distance(sims).numpy()
            bar.update(b1 - b0)
        x_new = xt[torch.from_numpy(new_pos)]
        for b0, b1 in block_ranges(len(merge_pos), block_size):
            rows, at = merge_rows[b0:b1], merge_pos[b0:b1]
            d_new = similarity_to_distance(xt[torch.from_numpy(at)] @ x_new.T)
            stored = position_of(old_nb[rows])
            pos, dist = _merge(xs, at, stored, old_dist[rows], new_pos, d_new.numpy(), kk)
            out_pos[at], out_dist[at] = pos, dist
            if width == kk:
                changed[at] = (pos != stored).any(axis=1) | (dist != old_dist[rows]).any(axis=1)
            bar.update(b1 - b0)

    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    return NeighbourUpdate(
        neighbour_ids=sorted_ids[out_pos][inverse].astype(np.int32),
        distances=out_dist[inverse], added=len(new_pos), removed=len(removed_ids),
        recomputed=len(full_pos), changed=changed[inverse])


def _positions(sorted_ids: np.ndarray):
    """id -> position among ``sorted_ids``: a look-up table where ids are dense
    enough, a binary search otherwise."""
    top = int(sorted_ids[-1]) if len(sorted_ids) else 0
    if top < 16 * len(sorted_ids) + 2**20:  # at most 64 bytes per image, or 4 MiB
        table = np.full(top + 1, -1, dtype=np.int32)
        table[sorted_ids] = np.arange(len(sorted_ids))
        return lambda ids: table[ids].astype(np.int64)
    return lambda ids: np.searchsorted(sorted_ids, ids)


def _merge(x: np.ndarray, rows: np.ndarray, stored_pos: np.ndarray, stored_dist: np.ndarray,
           new_pos: np.ndarray, new_dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest of each row's stored list and the new candidates.

    The stored list (the engine's order: distance, then similarity, then
    position) keeps its order; each new candidate goes in after the stored
    entries of smaller distance, by a batched binary search. Where a new
    candidate's distance equals a stored one's, or another new one's (two
    similarities an ulp apart round to one distance, or an exact tie), the row
    is merged by (distance, float64 similarity, position) instead, as the
    engine orders them.
    """
    b, width = stored_pos.shape
    m = len(new_pos)
    if not m:
        return stored_pos[:, :k], stored_dist[:, :k]
    sd = torch.from_numpy(np.ascontiguousarray(stored_dist))
    all_new = torch.from_numpy(np.ascontiguousarray(new_dist, np.float32))
    if width >= k:  # only candidates not beyond the k-th stored distance can enter
        m = max(1, int((all_new <= sd[:, k - 1:k]).sum(dim=1).max()))
    # the m nearest new ones, in order; equal distances are found below and
    # those rows merged by _merge_row, so topk's order among ties does not matter
    nd, perm = torch.topk(all_new, m, dim=1, largest=False, sorted=True)
    left = torch.searchsorted(sd, nd, right=False)
    right = torch.searchsorted(sd, nd, right=True)
    # only ties inside the k kept matter
    inside = left < k
    tied = ((left != right) & inside).any(dim=1) | (
        (nd[:, 1:] == nd[:, :-1]) & inside[:, 1:]).any(dim=1)
    shift = torch.zeros((b, width + 1), dtype=torch.int64).scatter_add_(
        1, left, torch.ones_like(left)).cumsum(dim=1)
    at_stored = torch.arange(width) + shift[:, :width]
    at_new = left + torch.arange(m)
    pos = torch.empty((b, width + m), dtype=torch.int64)
    dist = torch.empty((b, width + m), dtype=torch.float32)
    pos.scatter_(1, at_stored, torch.from_numpy(stored_pos))
    pos.scatter_(1, at_new, torch.from_numpy(new_pos)[perm])
    dist.scatter_(1, at_stored, sd)
    dist.scatter_(1, at_new, nd)
    pos, dist = pos[:, :k].numpy(), dist[:, :k].numpy()
    for r in np.flatnonzero(tied.numpy()):
        pos[r], dist[r] = _merge_row(x, rows[r], stored_pos[r], stored_dist[r], new_pos,
                                     new_dist[r], k)
    return pos, dist


def _merge_row(x: np.ndarray, row: int, stored_pos: np.ndarray, stored_dist: np.ndarray,
               new_pos: np.ndarray, new_dist: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """One row of :func:`_merge` where distances tie: the stored entries keep their
    order; each new one goes before the first stored entry after it by
    (distance, float64 similarity, position), the new ones in that order."""
    width = len(stored_pos)
    q = x[row].astype(np.float64)
    new_dist = new_dist.astype(np.float32)
    new_sim = x[new_pos].astype(np.float64) @ q
    order = np.lexsort((new_pos, -new_sim, new_dist))
    c_pos, c_dist, c_sim = new_pos[order], new_dist[order], new_sim[order]
    keep = np.searchsorted(stored_dist, c_dist, side="left") < k  # only these can be kept
    c_pos, c_dist, c_sim = c_pos[keep], c_dist[keep], c_sim[keep]
    s_sim = x[stored_pos].astype(np.float64) @ q
    after = (stored_dist[None] > c_dist[:, None]) | (
        (stored_dist[None] == c_dist[:, None])
        & ((s_sim[None] < c_sim[:, None])
           | ((s_sim[None] == c_sim[:, None]) & (stored_pos[None] > c_pos[:, None]))))
    first = np.where(after.any(axis=1), after.argmax(axis=1), width)
    first = np.maximum.accumulate(first) if len(first) else first
    at_new = first + np.arange(len(first))
    at_stored = np.arange(width) + np.searchsorted(first, np.arange(width), side="right")
    pos = np.empty(width + len(first), dtype=np.int64)
    dist = np.empty(width + len(first), dtype=np.float32)
    pos[at_stored], dist[at_stored] = stored_pos, stored_dist
    pos[at_new], dist[at_new] = c_pos, c_dist
    return pos[:k], dist[:k]
