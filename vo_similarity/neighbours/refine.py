"""Relevance feedback: rank all images by similarity to chosen examples.

Given positive example images (and optionally negative ones), every other
image gets the score

    score(x) = mean_{p in P} <x, p>  -  mean_{q in Q} <x, q>

(the second term is 0 without negatives), i.e. the inner product of ``x``
with the difference of the class centroids: the Rocchio relevance-feedback
rule (Rocchio 1971, "Relevance feedback in information retrieval", in *The
SMART Retrieval System*) with equal weights. On unit vectors <x, p> = 1 - |x - p|²/2,
so with one positive and no negative the ranking is the nearest-neighbour
ranking. The examples themselves (positives and negatives) are not returned;
ties are broken by smaller id, as in the neighbour tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["Ranking", "refine"]


@dataclass(frozen=True)
class Ranking:
    """Images ranked by refinement score, best first."""

    ids: np.ndarray     #: int64 image ids
    scores: np.ndarray  #: float32 scores, decreasing


def _rows_of(wanted: Iterable[int], ids: np.ndarray, what: str) -> np.ndarray:
    wanted = np.unique(np.asarray(list(wanted), dtype=np.int64))
    order = np.argsort(ids, kind="stable")
    where = np.searchsorted(ids, wanted, sorter=order)
    where = np.minimum(where, len(ids) - 1)
    rows = order[where]
    unknown = wanted[ids[rows] != wanted]
    if len(unknown):
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise KeyError(f"unknown {what} image id(s): {shown}")
    return rows


def refine(embeddings: np.ndarray, ids: np.ndarray, positive_ids: Iterable[int],
           negative_ids: Iterable[int] = (), *, n: int | None = 1000) -> Ranking:
    """Rank all images by mean similarity to positives minus that to negatives.

    Args:
        embeddings: ``[N, D]`` unit vectors.
        ids: ``[N]`` image ids of the rows.
        positive_ids: at least one id of an image like the ones wanted.
        negative_ids: ids of images unlike the ones wanted.
        n: how many images to return (``None``: all the others).

    Returns:
        The ``n`` best images that are not among the examples.

    Raises:
        ValueError: without positives, or with an id both positive and negative.
        KeyError: for ids that are not among ``ids``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    x = np.asarray(embeddings, dtype=np.float32)
    positive_ids, negative_ids = list(positive_ids), list(negative_ids)
    if not positive_ids:
        raise ValueError("refine needs at least one positive image id")
    both = set(map(int, positive_ids)) & set(map(int, negative_ids))
    if both:
        raise ValueError(f"image id(s) both positive and negative: {sorted(both)}")
    pos_rows = _rows_of(positive_ids, ids, "positive")
    neg_rows = _rows_of(negative_ids, ids, "negative") if negative_ids else pos_rows[:0]
    direction = x[pos_rows].mean(axis=0, dtype=np.float64)
    if len(neg_rows):
        direction -= x[neg_rows].mean(axis=0, dtype=np.float64)
    scores = (x @ direction.astype(np.float32)).astype(np.float32)
    keep = np.ones(len(ids), dtype=bool)
    keep[pos_rows] = False
    keep[neg_rows] = False
    cand = np.flatnonzero(keep)
    order = np.lexsort((ids[cand], -scores[cand]))
    if n is not None:
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        order = order[:n]
    best = cand[order]
    return Ranking(ids=ids[best], scores=scores[best])
