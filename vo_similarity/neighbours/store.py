"""Read a model's embeddings and write its neighbour files.

The outputs are ``numpy.lib.format.open_memmap`` files written under a
temporary name beside the final one (:func:`vo_similarity.workdir.atomic_write`)
and moved into place only when complete, so an interrupted run never leaves a
half-written neighbour table; rerunning simply recomputes it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vo_similarity.neighbours.outlier import DEFAULT_OUTLIER_NEIGHBOURS, outlier_scores
from vo_similarity.neighbours.search import find_neighbours, neighbour_count
from vo_similarity.workdir import ModelDir, atomic_write

__all__ = ["NeighbourSummary", "compute_model_neighbours", "load_embeddings"]

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class NeighbourSummary:
    """What :func:`compute_model_neighbours` wrote."""

    n_images: int
    k: int
    files: tuple[Path, ...]


def load_embeddings(model: ModelDir) -> tuple[np.ndarray, np.ndarray]:
    """A model's ``[N, D]`` embeddings and ``[N]`` image ids."""
    for path in (model.embeddings, model.embedding_ids):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run 'vo-similarity embed' for model "
                                    f"{model.name!r} first")
    x = np.load(model.embeddings)
    ids = np.load(model.embedding_ids)
    if len(ids) != len(x):
        raise ValueError(f"{model.embeddings.name} has {len(x)} rows but "
                         f"{model.embedding_ids.name} has {len(ids)}")
    return x, ids


def compute_model_neighbours(model: ModelDir, k: int = 1000, *,
                             outlier_neighbours: int = DEFAULT_OUTLIER_NEIGHBOURS,
                             progress: bool = True, **search_options) -> NeighbourSummary:
    """Compute and store the neighbours and outlier scores of one model.

    Args:
        model: the model folder holding ``embeddings.npy`` and ``embedding_ids.npy``.
        k: neighbours per image (``N - 1`` when fewer images).
        outlier_neighbours: the ``m`` of :func:`outlier_scores`.
        progress: show a progress bar.
        **search_options: passed to :func:`find_neighbours` (backend, device,
            precision, block_size, column_block_size, cluster).
    """
    x, ids = load_embeddings(model)
    kk = neighbour_count(k, len(x))
    targets = (model.neighbour_ids, model.neighbour_dist, model.outlier)
    with contextlib.ExitStack() as files:  # all three replaced only when all are complete
        temps = [files.enter_context(atomic_write(p)) for p in targets]
        out_ids = np.lib.format.open_memmap(temps[0], mode="w+", dtype=np.int32,
                                            shape=(len(x), kk))
        out_dist = np.lib.format.open_memmap(temps[1], mode="w+", dtype=np.float32,
                                             shape=(len(x), kk))
        find_neighbours(x, ids, k, out_ids=out_ids, out_dist=out_dist, progress=progress,
                        **search_options)
        np.save(temps[2], outlier_scores(out_dist, outlier_neighbours))
        out_ids.flush()
        out_dist.flush()
        del out_ids, out_dist
    LOG.info("wrote %s", ", ".join(p.name for p in targets))
    return NeighbourSummary(n_images=len(x), k=kk, files=targets)
