"""Retrieval metrics on unit vectors: precision@k, mean average precision, invariance."""

from __future__ import annotations

import numpy as np

__all__ = ["invariance", "mean_average_precision", "precision_at_k", "similarity_ranking"]


def similarity_ranking(vectors: np.ndarray) -> np.ndarray:
    """Indices of all other rows by decreasing cosine similarity, self excluded: ``[N, N-1]``."""
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")
    return order[:, :-1]  # self (at -inf) is last


def _labelled(labels: np.ndarray) -> np.ndarray:
    return np.array([str(x) != "" for x in labels])


def precision_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> dict[str, float]:
    """Precision@k of every labelled query among all other images, averaged per class.

    Returns:
        ``{"macro": mean over classes of the class mean, "micro": mean over queries,
        "per_class": {label: value}}``.
    """
    labels = np.asarray(labels, dtype=object)
    order = similarity_ranking(vectors)[:, :k]
    hits = labels[order] == labels[:, None]
    per_query = hits.mean(1)
    mask = _labelled(labels)
    per_class = {str(c): float(per_query[labels == c].mean()) for c in sorted(set(labels[mask]))}
    return {
        "macro": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        "micro": float(per_query[mask].mean()) if mask.any() else float("nan"),
        "per_class": per_class,
    }


def mean_average_precision(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean over labelled queries of the average precision of the full ranking.

    AP of one query = mean over its relevant items of the precision at their rank.
    Returns ``{"macro": mean over classes, "micro": mean over queries}``.
    """
    labels = np.asarray(labels, dtype=object)
    order = similarity_ranking(vectors)
    rel = labels[order] == labels[:, None]
    cum = np.cumsum(rel, axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    n_rel = rel.sum(1)
    ap = np.where(n_rel > 0, (rel * cum / ranks).sum(1) / np.maximum(n_rel, 1), np.nan)
    mask = _labelled(labels) & (n_rel > 0)
    classes = sorted(set(labels[mask]))
    return {
        "macro": float(np.mean([ap[mask & (labels == c)].mean() for c in classes]))
        if classes else float("nan"),
        "micro": float(ap[mask].mean()) if mask.any() else float("nan"),
    }


def invariance(originals: np.ndarray, copies: np.ndarray) -> dict[str, float]:
    """How well each transformed copy finds its own original among all originals.

    Args:
        originals: ``[N, D]`` unit vectors of the images.
        copies: ``[N, D]`` unit vectors of one transformed copy of each image, same order.

    Returns:
        ``{"top1": fraction whose nearest original is their own, "mean_rank": mean
        1-based rank of the own original, "median_rank": ...}``.
    """
    sim = copies @ originals.T
    own = np.diag(sim)
    rank = 1 + (sim > own[:, None]).sum(1)
    return {"top1": float((rank == 1).mean()), "mean_rank": float(rank.mean()),
            "median_rank": float(np.median(rank))}
