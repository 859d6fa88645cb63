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
   was cut at k.

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
from vo_similarity.neighbours.search import check_embeddings, neighbour_count

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
    old_nb = np.asarray(old_neighbour_ids, dtype=np.int64)
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
    # stored rows that stay, by their position among the current rows
    stay_rows = np.flatnonzero(kept)
    stay_pos = np.searchsorted(sorted_ids, old_ids[stay_rows])
    width = old_nb.shape[1]
    complete = width >= len(old_ids) - 1  # the stored lists hold every other old image
    broken = np.isin(old_nb[stay_rows], removed_ids).any(axis=1)
    if kk > width and not complete:
        broken[:] = True  # the stored lists were cut before the k now wanted
    full_pos = np.sort(np.concatenate([new_pos, stay_pos[broken]]))
    merge_rows, merge_pos = stay_rows[~broken], stay_pos[~broken]
    LOG.info("update: %d images (%d new, %d removed); %d rows computed in full, %d merged",
             n, len(new_pos), len(removed_ids), len(full_pos), len(merge_pos))

    out_pos = np.empty((n, kk), dtype=np.int64)
    out_dist = np.empty((n, kk), dtype=np.float32)
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
            rows = merge_rows[b0:b1]
            d_new = similarity_to_distance(xt[torch.from_numpy(merge_pos[b0:b1])] @ x_new.T)
            pos, dist = _merge(xs, merge_pos[b0:b1], np.searchsorted(sorted_ids, old_nb[rows]),
                               old_dist[rows], new_pos, d_new.numpy(), kk)
            out_pos[merge_pos[b0:b1]], out_dist[merge_pos[b0:b1]] = pos, dist
            bar.update(b1 - b0)

    changed = np.ones(n, dtype=bool)
    if width == kk:
        stored_ids = old_nb[stay_rows]
        changed[stay_pos] = ((sorted_ids[out_pos[stay_pos]] != stored_ids).any(axis=1)
                             | (out_dist[stay_pos] != old_dist[stay_rows]).any(axis=1))
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    return NeighbourUpdate(
        neighbour_ids=sorted_ids[out_pos][inverse].astype(np.int32),
        distances=out_dist[inverse], added=len(new_pos), removed=len(removed_ids),
        recomputed=len(full_pos), changed=changed[inverse])


def _merge(x: np.ndarray, rows: np.ndarray, stored_pos: np.ndarray, stored_dist: np.ndarray,
           new_pos: np.ndarray, new_dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest of each row's stored list and the new candidates.

    By distance, then smaller position (id), as the engine orders exact ties.
    Two similarities an ulp apart can round to the same distance; the engine
    orders those by its float32 similarity. So in a row whose candidates share
    a distance, the stored list keeps its order (the engine's) and the new
    candidates are merged into it by (distance, float64 similarity, position).
    """
    b, width = stored_pos.shape
    pos = np.concatenate([stored_pos, np.broadcast_to(new_pos, (b, len(new_pos)))], axis=1)
    dist = np.concatenate([stored_dist, new_dist.astype(np.float32)], axis=1)
    order = np.lexsort((pos, dist), axis=-1)
    head = np.take_along_axis(dist, order[:, :k + 1], 1)
    for r in np.flatnonzero((head[:, 1:] == head[:, :-1]).any(axis=1)):
        sims = x[pos[r]].astype(np.float64) @ x[rows[r]].astype(np.float64)
        keys = list(zip(dist[r].tolist(), (-sims).tolist(), pos[r].tolist()))
        new = sorted(range(width, len(keys)), key=keys.__getitem__)
        merged, i, j = [], 0, 0
        while len(merged) < k:
            if j < len(new) and (i == width or keys[new[j]] < keys[i]):
                merged.append(new[j])
                j += 1
            else:
                merged.append(i)
                i += 1
        order[r, :k] = merged
    order = order[:, :k]
    return np.take_along_axis(pos, order, 1), np.take_along_axis(dist, order, 1)
