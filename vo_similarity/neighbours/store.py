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

__all__ = ["NeighbourSummary", "compute_model_neighbours", "load_embeddings",
           "update_model_neighbours"]

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


def update_model_neighbours(work, model: ModelDir, k: int | None = None, *,
                            outlier_neighbours: int = DEFAULT_OUTLIER_NEIGHBOURS,
                            device: str = "cpu", progress: bool = True, block_size: int = 1024,
                            column_block_size: int = 65536):
    """Bring a model's embeddings and neighbours up to date with the work directory.

    Images the manifest gained since the model was embedded are embedded with
    the model (the others keep their embeddings: ingest only appends, so their
    pixels are those that were embedded); images it lost are dropped; the
    neighbour lists are updated by :func:`.update.update_neighbours`. The
    embeddings, their ids and source, the neighbours and the outlier scores
    are replaced together, only when all are written.

    Args:
        work: the :class:`~vo_similarity.workdir.WorkDir`.
        model: the model, already embedded and with neighbours.
        k: neighbours per image; default: the stored lists' k (1000 where
            they held every other image).

    Returns:
        The :class:`.update.NeighbourUpdate`.
    """
    import json

    from vo_similarity.embed.embed import embed_images, load_trained
    from vo_similarity.learn.data import load_images
    from vo_similarity.neighbours.update import update_neighbours
    from vo_similarity.workdir import PIXELS_DIGEST, file_sha256

    old_x, old_ids = load_embeddings(model)
    for path in (model.neighbour_ids, model.neighbour_dist):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run 'vo-similarity neighbours' for "
                                    f"model {model.name!r} first")
    old_nb, old_dist = np.load(model.neighbour_ids), np.load(model.neighbour_dist)
    if len(old_nb) != len(old_ids):
        raise ValueError(f"{model.neighbour_ids.name} has {len(old_nb)} rows but the model "
                         f"has {len(old_ids)} embeddings: run 'vo-similarity neighbours'")
    if k is None:
        k = old_nb.shape[1] if old_nb.shape[1] < len(old_ids) - 1 else 1000
    cfg, net = load_trained(model, device)
    data = load_images(work, category=cfg.category)
    ids = np.asarray(data.image_ids, dtype=np.int64)
    new = ~np.isin(ids, old_ids)
    x = np.empty((len(ids), old_x.shape[1]), dtype=np.float32)
    stay = np.flatnonzero(~new)
    x[stay] = old_x[_rows_of(old_ids, ids[stay])]
    if new.any():
        LOG.info("embedding %d new images with model %s", int(new.sum()), model.name)
        x[new] = embed_images(net, data.pixels.subset(np.flatnonzero(new)), cfg,
                              progress=progress)
    result = update_neighbours(x, ids, old_ids, old_nb, old_dist, k, block_size=block_size,
                               column_block_size=column_block_size, progress=progress)
    targets = (model.embeddings, model.embedding_ids, model.embedding_source,
               model.neighbour_ids, model.neighbour_dist, model.outlier)
    with contextlib.ExitStack() as files:
        temps = [files.enter_context(atomic_write(p)) for p in targets]
        np.save(temps[0], x)
        np.save(temps[1], ids.astype(np.int32))
        temps[2].write_text(json.dumps({PIXELS_DIGEST: file_sha256(work.pixels)}, indent=1)
                            + "\n")
        np.save(temps[3], result.neighbour_ids)
        np.save(temps[4], result.distances)
        np.save(temps[5], outlier_scores(result.distances, outlier_neighbours))
    return result


def _rows_of(stored: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Rows of ``wanted`` ids in the unsorted id array ``stored``."""
    order = np.argsort(stored, kind="stable")
    return order[np.searchsorted(stored[order], wanted)]
