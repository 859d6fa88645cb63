"""Retrieval metrics on unit vectors: precision@k, mean average precision, invariance."""

from __future__ import annotations

import numpy as np

__all__ = [
    "category_classes",
    "category_precision",
    "invariance",
    "mean_average_precision",
    "precision_at_k",
    "similarity_ranking",
]


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


def category_classes(categories: np.ndarray, min_class_size: int = 20) -> dict[str, int]:
    """The categories with at least ``min_class_size`` images, and their sizes."""
    cats = np.array([str(c) for c in categories], dtype=object)
    names, counts = np.unique(cats[cats != ""], return_counts=True)
    return {str(c): int(n) for c, n in zip(names, counts) if n >= min_class_size}


def category_precision(
    vectors: np.ndarray, categories: np.ndarray, image_ids: np.ndarray, *, k: int = 10,
    min_class_size: int = 20, held_out: float = 0.5, n_boot: int = 1000, seed: int = 0,
) -> dict:
    """Macro precision@k against a catalogue classification, on a fixed tuning/held-out split.

    The gallery is every image of a class with at least ``min_class_size`` members
    (smaller classes and unlabelled images take no part); each of them is a query
    of the *held-out* half or of the *tuning* half, by a fixed hash of its
    ``image_id`` (:func:`vo_similarity.learn.data.is_validation`), and its k
    nearest images are taken from the whole gallery.  A recipe is chosen on the
    tuning half and reported on the held-out half.  The 95 % interval of each macro
    value is a bootstrap over queries, resampled within each class.

    Returns:
        ``{"k", "min_class_size", "classes": {name: size}, "held_out": {...},
        "tuning": {...}}`` with, per half, ``macro``, ``ci_low``, ``ci_high``,
        ``n_queries`` and ``per_class``; ``{}`` when no class is large enough.
    """
    from vo_similarity.learn.data import is_validation

    cats = np.array([str(c) for c in categories], dtype=object)
    classes = category_classes(cats, min_class_size)
    gallery = np.flatnonzero(np.isin(cats, list(classes)))
    if not classes or len(gallery) <= k:
        return {}
    v = np.asarray(vectors, dtype=np.float32)[gallery]
    g = cats[gallery]
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    hits = (g[top] == g[:, None]).mean(1)
    val = is_validation(np.asarray(image_ids)[gallery], held_out)
    rng = np.random.default_rng(seed)
    out: dict = {"k": k, "min_class_size": min_class_size, "classes": classes}
    for half, mask in (("held_out", val), ("tuning", ~val)):
        per_class = {c: hits[mask & (g == c)] for c in classes if (mask & (g == c)).any()}
        boot = np.mean([[rng.choice(h, len(h)).mean() for h in per_class.values()]
                        for _ in range(n_boot)], axis=1)
        out[half] = {
            "macro": float(np.mean([h.mean() for h in per_class.values()])),
            "ci_low": float(np.quantile(boot, 0.025)), "ci_high": float(np.quantile(boot, 0.975)),
            "n_queries": int(mask.sum()),
            "per_class": {c: float(h.mean()) for c, h in per_class.items()},
        }
    return out
