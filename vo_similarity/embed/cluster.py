"""Embedding on a Dask cluster: batches of images as tasks, the model on every worker.

The same engine as the neighbour search's ``--cluster``
(:mod:`vo_similarity.neighbours.cluster`, Dask distributed): the trained
weights are scattered once to every worker, and each task is one batch of the
single-process loop (:func:`vo_similarity.embed.embed.embed_images`), its
pixels sent with it. The batches are the single-process ones, so the vectors
equal the single-process vectors bit for bit on workers with the same torch
build and CPU kind (a test runs a two-worker ``LocalCluster``); a different
batch size changes the last bits, as it does in one process.

At most ``2 x (threads of the cluster)`` batches are in flight, so the
client holds few batches of pixels whatever N is.
"""

from __future__ import annotations

import logging
import time
import uuid

import numpy as np
import torch

from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.data import PixelStore
from vo_similarity.learn.model import SimCLR
from vo_similarity.neighbours.cluster import as_finished, session

__all__ = ["cluster_embed"]

LOG = logging.getLogger(__name__)

#: on a worker: the models built from scattered weights, by the scatter's token
_MODELS: dict[str, SimCLR] = {}


def _embed_task(model_data: tuple, pixels: np.ndarray, start: int,
                pool_rotations: int | None, device: str) -> tuple[int, np.ndarray]:
    """One batch on a worker, as :func:`..embed.embed_images` computes it."""
    from vo_similarity.learn.model import build_model, embed_tensor

    token, cfg, state = model_data
    model = _MODELS.get(token)
    if model is None:
        _MODELS.clear()  # one model per worker at a time: the last one asked for
        model = build_model(cfg)
        model.load_state_dict(state)
        model = _MODELS.setdefault(token, model.to(device).eval())
    vectors = embed_tensor(model, torch.from_numpy(pixels), cfg, pool_rotations)
    return start, vectors.cpu().numpy().astype(np.float32)


def cluster_embed(model: SimCLR, images: torch.Tensor | PixelStore, cfg: TrainConfig, *,
                  step: int, cluster, pool_rotations: int | None = None,
                  device: str = "cpu", progress: bool = False) -> np.ndarray:
    """float32 ``[N, D]`` unit vectors of ``images``, batch by batch on a Dask cluster.

    Args:
        model: the trained network (its weights go to every worker).
        images: ``[N, 1, S, S]`` pixels in [0, 1], a tensor or the pixel store.
        cfg: the model's configuration.
        step: images per batch (the single-process loop's).
        cluster: what :func:`vo_similarity.neighbours.cluster.connect` takes.
        pool_rotations: as for :func:`vo_similarity.learn.model.embed_tensor`.
        device: torch device on the workers.
        progress: a progress bar over the batches.

    Raises:
        RuntimeError: Dask distributed is missing or the scheduler cannot be reached.
    """
    from tqdm.auto import tqdm

    with session(cluster, "embedding") as (client, threads):
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        shared = client.scatter((uuid.uuid4().hex, cfg, state), broadcast=True, hash=False)

        def submit(start: int):
            pixels = np.asarray(images[start:start + step], dtype=np.float32)
            return client.submit(_embed_task, shared, pixels, start, pool_rotations, device,
                                 pure=False)

        out: np.ndarray | None = None
        t0 = time.perf_counter()
        batches = as_finished(client, submit, range(0, len(images), step), 2 * threads)
        with tqdm(total=len(images), disable=not progress, desc="embed", unit="img") as bar:
            for start, vectors in batches:
                if out is None:
                    out = np.empty((len(images), vectors.shape[1]), np.float32)
                out[start:start + len(vectors)] = vectors
                bar.update(len(vectors))
        LOG.info("%d images embedded on the cluster in %.1f s", len(images),
                 time.perf_counter() - t0)
        return out if out is not None else np.empty((0, 0), np.float32)
