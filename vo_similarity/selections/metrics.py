"""How well an embedding agrees with recorded selections.

For a query image q, the astronomers marked some images similar (S) and some
not similar (N). Two scores per query, averaged over queries:

- **pairwise accuracy**: the fraction of the pairs (s in S, n in N) that the
  embedding orders as the marks do, cos(q, s) > cos(q, n), a tie counting one
  half -- the area under the ROC curve of the query's marks (Hanley & McNeil
  1982), the pairwise ranking accuracy of learning to rank (Joachims 2002,
  KDD). Queries with marks of one kind only have no pair and take no part.
- **recall@k**: the share of the images marked similar to q that are among
  the k images nearest to q of all N images (q itself excluded; ties broken
  towards the lower row, as :func:`vo_similarity.evaluate.metrics.similarity_ranking`).

Each mark counts once: an image marked twice counts twice in the pairs, and an
image marked both similar and not similar (two users, or one who changed their
mind) ties with itself, a half. Recall counts distinct images.

Queries, not marks, are the independent units (one user marks many images of
one query), so the 95 % intervals are percentile bootstraps over queries
(Efron & Tibshirani 1993), and the comparison of two embeddings resamples the
same queries for both (a paired bootstrap).
"""

from __future__ import annotations

import numpy as np

from vo_similarity.selections.source import Selections

__all__ = ["paired_improvement", "per_query_scores", "selection_scores"]

#: 95 % percentile intervals
_LOW, _HIGH = 0.025, 0.975


def _rows(vectors: np.ndarray, image_ids: np.ndarray, sel: Selections
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the query and chosen images of the usable marks, their is_similar, and
    the mask of usable marks (both images known, the chosen one not the query)."""
    vectors = np.asarray(vectors)
    ids = np.asarray(image_ids, dtype=np.int64)
    if vectors.ndim != 2 or ids.shape != (len(vectors),):
        raise ValueError(f"vectors {vectors.shape} and image_ids {ids.shape} do not match")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if len(ids) > 1 and (np.diff(sorted_ids) == 0).any():
        raise ValueError("image_ids holds an id twice")

    def lookup(wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.minimum(np.searchsorted(sorted_ids, wanted), max(len(ids) - 1, 0))
        found = (sorted_ids[at] == wanted) if len(ids) else np.zeros(len(wanted), bool)
        return order[at] if len(ids) else at, found

    q_row, q_ok = lookup(sel.query_id)
    c_row, c_ok = lookup(sel.chosen_id)
    usable = q_ok & c_ok & (sel.query_id != sel.chosen_id)
    return q_row[usable], c_row[usable], sel.is_similar[usable], usable


def per_query_scores(vectors: np.ndarray, image_ids: np.ndarray, sel: Selections, *,
                     k: int = 10) -> dict:
    """Each query's pairwise accuracy and recall@k (the terms of :func:`selection_scores`).

    Returns:
        ``{"query_id": int64 [Q], "accuracy": float [Q], "recall": float [Q],
        "n_pairs": int [Q], "n_marks": int, "dropped": int}``, one entry per
        query with a usable mark; accuracy is NaN for a query without both
        kinds of marks, recall NaN for one without a similar image.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    vectors = np.asarray(vectors)
    q_row, c_row, similar, usable = _rows(vectors, image_ids, sel)
    by_query = np.argsort(q_row, kind="stable")
    queries, starts = np.unique(q_row[by_query], return_index=True)
    groups = np.split(by_query, starts[1:]) if len(queries) else []
    ids = np.asarray(image_ids, dtype=np.int64)
    positions = np.arange(len(vectors))
    accuracy = np.full(len(queries), np.nan)
    recall = np.full(len(queries), np.nan)
    n_pairs = np.zeros(len(queries), dtype=np.int64)
    for i, (q, marks) in enumerate(zip(queries, groups)):
        sims = (vectors @ vectors[q]).astype(np.float64)  # one product: equal ids tie exactly
        yes, no = c_row[marks[similar[marks]]], c_row[marks[~similar[marks]]]
        s, n = sims[yes], sims[no]
        if len(s) and len(n):
            wins = (s[:, None] > n[None, :]) + 0.5 * (s[:, None] == n[None, :])
            accuracy[i], n_pairs[i] = wins.mean(), wins.size
        if len(s):
            sims[q] = -np.inf  # the query is not its own neighbour
            chosen = np.unique(yes)
            value = sims[chosen]
            # 0-based position in the order of decreasing cosine, ties by lower row
            rank = ((sims[None, :] > value[:, None]).sum(1)
                    + ((sims[None, :] == value[:, None])
                       & (positions[None, :] < chosen[:, None])).sum(1))
            recall[i] = float((rank < k).mean())
    return {"query_id": ids[queries] if len(ids) else np.zeros(0, np.int64),
            "accuracy": accuracy, "recall": recall, "n_pairs": n_pairs,
            "n_marks": int(usable.sum()), "dropped": int((~usable).sum())}


def _interval(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict:
    """Mean and 95 % percentile-bootstrap interval of per-query ``values`` (NaN: none)."""
    if len(values) == 0:
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "n_queries": 0}
    means = np.array([values[rng.integers(0, len(values), len(values))].mean()
                      for _ in range(n_boot)])
    return {"value": float(values.mean()), "ci_low": float(np.quantile(means, _LOW)),
            "ci_high": float(np.quantile(means, _HIGH)), "n_queries": len(values)}


def selection_scores(vectors: np.ndarray, image_ids: np.ndarray, sel: Selections, *,
                     k: int = 10, n_boot: int = 1000, seed: int = 0) -> dict:
    """Pairwise accuracy and recall@k of an embedding on recorded selections.

    Args:
        vectors: ``[N, D]`` unit vectors of the images.
        image_ids: ``[N]`` their ids (a model's ``embedding_ids``).
        sel: the selections; marks whose query or chosen image is not in
            ``image_ids``, or that mark the query itself, are dropped (counted).
        k: the k of recall@k.
        n_boot: bootstrap resamples of the queries for the 95 % intervals.
        seed: seed of the bootstrap.

    Returns:
        ``{"n_queries": queries with both kinds of marks, "n_marks": marks used,
        "n_pairs": (similar, not similar) pairs, "dropped": marks not used, "k",
        "pairwise_accuracy": {"value", "ci_low", "ci_high", "n_queries"},
        "recall@k": {... over queries with a similar image},
        "per_query_accuracy": {query_id: accuracy}}``. Values are NaN where no
        query qualifies.
    """
    per = per_query_scores(vectors, image_ids, sel, k=k)
    has_pairs = ~np.isnan(per["accuracy"])
    has_similar = ~np.isnan(per["recall"])
    return {
        "n_queries": int(has_pairs.sum()), "n_marks": per["n_marks"],
        "n_pairs": int(per["n_pairs"].sum()), "dropped": per["dropped"], "k": k,
        "pairwise_accuracy": _interval(per["accuracy"][has_pairs], n_boot,
                                       np.random.default_rng(seed)),
        "recall@k": _interval(per["recall"][has_similar], n_boot,
                              np.random.default_rng([seed, 1])),
        "per_query_accuracy": {int(q): float(a) for q, a in
                               zip(per["query_id"][has_pairs], per["accuracy"][has_pairs])},
    }


def paired_improvement(before: np.ndarray, after: np.ndarray, image_ids: np.ndarray,
                       sel: Selections, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Pairwise accuracy of ``after`` minus that of ``before`` on the same queries.

    Both are ``[N, D]`` (D may differ) embeddings of the same ``image_ids``.
    The interval resamples queries with replacement and takes the same
    queries' differences, so what the queries share (some are hard for every
    embedding) cancels.

    Returns:
        ``{"value": mean difference, "ci_low", "ci_high", "before": mean
        accuracy of before, "after": of after, "n_queries"}``; NaN without
        a query that has both kinds of marks.
    """
    a = per_query_scores(before, image_ids, sel)["accuracy"]
    b = per_query_scores(after, image_ids, sel)["accuracy"]
    keep = ~np.isnan(a)  # the same queries for both: the marks and ids are the same
    diff = b[keep] - a[keep]
    out = _interval(diff, n_boot, np.random.default_rng(seed))
    return {"value": out["value"], "ci_low": out["ci_low"], "ci_high": out["ci_high"],
            "before": float(a[keep].mean()) if keep.any() else float("nan"),
            "after": float(b[keep].mean()) if keep.any() else float("nan"),
            "n_queries": int(keep.sum())}
