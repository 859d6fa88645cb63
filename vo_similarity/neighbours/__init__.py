"""Exact top-k nearest neighbours of every image, outlier scores, refinement.

Public API (imported lazily, so that ``vo-similarity --help`` stays fast)::

    find_neighbours(embeddings, ids, k=1000, backend="auto", ...)
    outlier_scores(distances, m=10)
    refine(embeddings, ids, positive_ids, negative_ids=(), n=1000)
    compute_model_neighbours(model_dir, k=1000, ...)
    update_neighbours(embeddings, ids, old_ids, old_neighbour_ids, old_distances, k)
    update_model_neighbours(work, model_dir, k=None, ...)

See ``docs/neighbours.md`` for the algorithm and its time and memory model.
"""

from __future__ import annotations

import importlib

__all__ = [
    "Ranking",
    "compute_model_neighbours",
    "find_neighbours",
    "outlier_scores",
    "refine",
    "update_model_neighbours",
    "update_neighbours",
]

_WHERE = {
    "find_neighbours": "search",
    "outlier_scores": "outlier",
    "refine": "refine",
    "Ranking": "refine",
    "compute_model_neighbours": "store",
    "update_neighbours": "update",
    "update_model_neighbours": "store",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
