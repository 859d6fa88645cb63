"""A picture of query images with their nearest neighbours, labels and credits."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from vo_similarity.evaluate.metrics import similarity_ranking
from vo_similarity.learn.data import ImageSet
from vo_similarity.workdir import atomic_write

__all__ = ["neighbour_grid"]


def _caption(data: ImageSet, i: int) -> str:
    """Target (or id), label where known, and the credit, one per line."""
    lines = [textwrap.shorten(str(data.names[i]) or f"#{data.image_ids[i]}", 24, placeholder="…")]
    if data.labels[i] and data.labels[i] != data.names[i]:
        lines.append(textwrap.shorten(str(data.labels[i]), 24, placeholder="…"))
    if data.credits[i]:
        lines.append(textwrap.shorten(str(data.credits[i]), 28, placeholder="…"))
    return "\n".join(lines)


def neighbour_grid(
    data: ImageSet, vectors: np.ndarray, path: Path, *, n_queries: int = 8, n_neighbours: int = 6,
    seed: int = 0, title: str = "",
) -> Path:
    """Write a PNG: one row per random query, its image first, then its neighbours.

    Each tile is captioned with target/label and the image's credit.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(data)
    n_queries = min(n_queries, n)
    n_neighbours = min(n_neighbours, n - 1)
    queries = np.random.default_rng(seed).choice(n, n_queries, replace=False)
    order = similarity_ranking(vectors)
    cols = n_neighbours + 1
    fig, axes = plt.subplots(n_queries, cols, figsize=(1.6 * cols, 1.95 * n_queries), dpi=90,
                             squeeze=False)
    for r, q in enumerate(queries):
        for c, j in enumerate([q, *order[q, :n_neighbours]]):
            ax = axes[r, c]
            ax.imshow(data.pixels[int(j)][0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(_caption(data, j), fontsize=5.5)
            if c == 0:
                for spine in ax.spines.values():
                    spine.set(color="tab:red", linewidth=2)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp)
        plt.close(fig)
    return path
