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

__all__ = ["NeighbourChanges", "NeighbourSummary", "compute_model_neighbours", "load_embeddings",
           "neighbour_state", "read_neighbour_changes",
           "update_model_neighbours"]

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class NeighbourSummary:
    """What :func:`compute_model_neighbours` wrote."""

    n_images: int
    k: int
    files: tuple[Path, ...]


def neighbour_state(model: ModelDir) -> str:
    """A digest of what publishing sends of a model: its ids, neighbours and outlier
    scores (the SHA-256 of their files' SHA-256s; "" where a file is missing)."""
    import hashlib

    from vo_similarity.workdir import file_sha256

    digests = [file_sha256(p) if p.is_file() else "" for p in
               (model.embedding_ids, model.neighbour_ids, model.neighbour_dist, model.outlier)]
    return hashlib.sha256(" ".join(digests).encode()).hexdigest()


@dataclass(frozen=True)
class NeighbourChanges:
    """The rows ``update`` changed, from the state ``base`` to the state ``result``
    (:func:`neighbour_state`): ``changed`` ids hold other lists (or are new),
    ``removed`` ids are gone."""

    base: str
    result: str
    changed: np.ndarray
    removed: np.ndarray


def read_neighbour_changes(model: ModelDir) -> NeighbourChanges | None:
    """The model's record of changed rows (None: none, or unreadable)."""
    import json

    try:
        record = json.loads(model.neighbour_changes.read_text(encoding="utf-8"))
        return NeighbourChanges(str(record["base"]), str(record["result"]),
                                np.asarray(record["changed"], dtype=np.int64),
                                np.asarray(record["removed"], dtype=np.int64))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_changes(model: ModelDir, base: str, earlier: NeighbourChanges | None,
                    ids: np.ndarray, changed: np.ndarray, removed: np.ndarray) -> None:
    """Write the changes from ``base`` to the model's current state, merged with the
    ``earlier`` record where it ends at ``base`` (two updates before one publish)."""
    import json

    changed, removed = np.asarray(changed, np.int64), np.asarray(removed, np.int64)
    if earlier is not None and earlier.result == base:
        base = earlier.base
        changed = np.union1d(changed, np.intersect1d(earlier.changed, ids))
        removed = np.union1d(removed, np.setdiff1d(earlier.removed, ids))
    record = {"base": base, "result": neighbour_state(model),
              "changed": np.unique(changed).tolist(), "removed": np.unique(removed).tolist()}
    with atomic_write(model.neighbour_changes) as tmp:
        tmp.write_text(json.dumps(record), encoding="utf-8")


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
    model.neighbour_changes.unlink(missing_ok=True)  # computed in full: no rows to pick
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
    the model, and the others keep their embeddings, when the images that were
    embedded are still the first ones of the pixel store, with the same pixels
    (:func:`~vo_similarity.workdir.embedded_images_unchanged`: ingest only
    appended); the neighbour lists are then updated by
    :func:`.update.update_neighbours`. Otherwise (an image was removed from the
    sources, so ingest numbered the later ones anew, or its file changed) every
    image is embedded again and the lists are computed in full. The
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
    from vo_similarity.neighbours.memory import empty_array
    from vo_similarity.neighbours.update import update_neighbours
    from vo_similarity.workdir import EMBEDDED_IMAGES, embedded_images_unchanged, embedding_source

    old_x, old_ids = load_embeddings(model)
    base, earlier = neighbour_state(model), read_neighbour_changes(model)
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
    source = embedding_source(work)
    recorded = (json.loads(model.embedding_source.read_text())
                if model.embedding_source.is_file() else {})
    rebuilt = not embedded_images_unchanged(work, recorded, source)
    stored_ids = old_ids
    if rebuilt:
        why = ("the images are no longer those it embedded (one was removed or changed, so "
               "ingest numbered them anew)" if EMBEDDED_IMAGES in recorded else
               "its embedding_source.json cannot tell whether the images it embedded are "
               "unchanged (it is missing or from an earlier version)")
        LOG.warning("model %s: %s; embedding all %d images and computing their neighbours "
                    "in full", model.name, why, len(ids))
        # new empty arrays, not views, so that the old ones can be freed
        old_x, old_ids = np.empty((0, old_x.shape[1]), np.float32), np.empty(0, np.int64)
        old_nb = np.empty((0, old_nb.shape[1]), old_nb.dtype)
        old_dist = np.empty((0, old_dist.shape[1]), old_dist.dtype)
    new = ~np.isin(ids, old_ids)
    x = empty_array((len(ids), old_x.shape[1]), np.float32)
    stay = np.flatnonzero(~new)
    x[stay] = old_x[_rows_of(old_ids, ids[stay])]
    if new.any():
        LOG.info("embedding %d new images with model %s", int(new.sum()), model.name)
        x[new] = embed_images(net, data.pixels.subset(np.flatnonzero(new)), cfg,
                              progress=progress)
    result = update_neighbours(x, ids, old_ids, old_nb, old_dist, k, block_size=block_size,
                               column_block_size=column_block_size, progress=progress)
    result.rebuilt = rebuilt
    targets = (model.embeddings, model.embedding_ids, model.embedding_source,
               model.neighbour_ids, model.neighbour_dist, model.outlier)
    with contextlib.ExitStack() as files:
        temps = [files.enter_context(atomic_write(p)) for p in targets]
        np.save(temps[0], x)
        np.save(temps[1], ids.astype(np.int32))
        temps[2].write_text(json.dumps(source, indent=1) + "\n")
        np.save(temps[3], result.neighbour_ids)
        np.save(temps[4], result.distances)
        np.save(temps[5], outlier_scores(result.distances, outlier_neighbours))
        # a record that no longer describes the files must not survive them
        model.neighbour_changes.unlink(missing_ok=True)
    _record_changes(model, base, earlier, ids, ids[result.changed],
                    np.setdiff1d(stored_ids, ids))
    return result


def _rows_of(stored: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Rows of ``wanted`` ids in the unsorted id array ``stored``."""
    order = np.argsort(stored, kind="stable")
    return order[np.searchsorted(stored[order], wanted)]
