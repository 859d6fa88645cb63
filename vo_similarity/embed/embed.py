"""Embed every image of a work directory with a trained model."""

from __future__ import annotations

import contextlib
import json
import logging

import numpy as np
import torch

from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.data import PixelStore, load_images
from vo_similarity.learn.model import SimCLR, embed_tensor, load_model
from vo_similarity.workdir import ModelDir, WorkDir, atomic_write, embedding_source

__all__ = ["embed_images", "embed_workdir", "load_trained"]

log = logging.getLogger(__name__)


def load_trained(model_dir: ModelDir, device: str | torch.device = "cpu") -> tuple[TrainConfig, SimCLR]:
    """The config and final weights of a trained model.

    Raises:
        FileNotFoundError: the model has not been trained (no config or weights).
    """
    for path in (model_dir.config, model_dir.weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `vo-similarity train` for this model")
    cfg = TrainConfig.load(model_dir.config)
    return cfg, load_model(cfg, model_dir.weights, device)


def embed_images(
    model: SimCLR, images: torch.Tensor | PixelStore, cfg: TrainConfig, *, batch_size: int = 256,
    progress: bool = False, pool_rotations: int | None = None, cluster=None,
) -> np.ndarray:
    """float32 ``[N, D]`` unit vectors of ``images`` [N, 1, S, S], computed (and read) in batches.

    With ``cluster`` (a Dask scheduler address, ``Client`` or cluster object)
    the batches run on its workers (:mod:`vo_similarity.embed.cluster`),
    giving the same vectors.
    """
    from tqdm.auto import tqdm

    n_views = max(1, 2 * (cfg.pool_rotations if pool_rotations is None else pool_rotations))
    step = max(1, batch_size // n_views) if n_views > 1 else batch_size
    if cluster is not None:
        from vo_similarity.embed.cluster import cluster_embed

        device = next(model.parameters()).device.type
        return cluster_embed(model, images, cfg, step=step, cluster=cluster,
                             pool_rotations=pool_rotations, device=device, progress=progress)
    # One array for the result, filled batch by batch: a list of small batch
    # results kept beside the large, short-lived tensors of each batch leaves
    # glibc's heap fragmented, and the resident memory grew ~20 kB per image.
    vectors = None
    for start in tqdm(range(0, len(images), step), disable=not progress, desc="embed", unit="batch"):
        batch = embed_tensor(model, images[start:start + step], cfg, pool_rotations).cpu().numpy()
        if vectors is None:
            vectors = np.empty((len(images), batch.shape[1]), dtype=np.float32)
        vectors[start:start + len(batch)] = batch
    if vectors is None:
        raise ValueError("no images to embed")
    return vectors


def embed_workdir(
    workdir: WorkDir, model_name: str | ModelDir, *, device: str = "cpu", batch_size: int = 256,
    progress: bool = True, all_categories: bool = False, cluster=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed the model's images (its category, or all) and write them beside the model
    (on the Dask cluster ``cluster`` where given: :func:`embed_images`).

    Returns:
        ``(embeddings [N, D] float32, image_ids [N] int32)``, also saved as
        ``ModelDir.embeddings`` and ``ModelDir.embedding_ids``, with what they
        come from in ``ModelDir.embedding_source`` (the pixel store's SHA-256,
        which publishing checks against the manifest, and its images' count and
        digest, which ``update`` checks). The three files are
        replaced together, only when all are written.
    """
    model_dir = model_name if isinstance(model_name, ModelDir) else workdir.model(model_name)
    cfg, model = load_trained(model_dir, device)
    source = embedding_source(workdir)
    data = load_images(workdir, category="" if all_categories else cfg.category)
    vectors = embed_images(model, data.pixels, cfg, batch_size=batch_size, progress=progress,
                           cluster=cluster)
    with contextlib.ExitStack() as files:
        targets = (model_dir.embeddings, model_dir.embedding_ids, model_dir.embedding_source)
        temps = [files.enter_context(atomic_write(p)) for p in targets]
        np.save(temps[0], vectors)
        np.save(temps[1], data.image_ids)
        temps[2].write_text(json.dumps(source, indent=1) + "\n")
    log.info("wrote %s %s", model_dir.embeddings, vectors.shape)
    return vectors, data.image_ids
