"""Evaluate a model against labels and against its own transformed copies, with baselines.

Every run computes the same metrics for three embeddings of the same images:
the trained model, raw pixels reduced by PCA, and the untrained network of the
same architecture (and the trained model without group pooling when it pools),
so a number never stands without its baselines.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from vo_similarity.embed.embed import embed_images, load_trained
from vo_similarity.evaluate.metrics import (
    category_precision,
    invariance,
    mean_average_precision,
    precision_at_k,
)
from vo_similarity.learn.augment import random_affine_matrices, warp
from vo_similarity.learn.data import ImageSet, load_images
from vo_similarity.learn.model import build_model
from vo_similarity.workdir import WorkDir, atomic_write

__all__ = [
    "InvarianceTransform",
    "evaluate_model",
    "invariance_matrices",
    "pixel_pca_embedding",
    "score_embeddings",
    "transformed_copies",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvarianceTransform:
    """The random transform of the invariance test (the same for every model)."""

    rotation_deg: float = 180.0
    flip_prob: float = 0.5
    shear_deg: float = 10.0
    scale_min: float = 0.85
    scale_max: float = 1.15
    offset: float = 0.0
    seed: int = 1234


def invariance_matrices(n: int, t: InvarianceTransform) -> torch.Tensor:
    """The ``[n, 2, 3]`` affine matrices (output -> input) of the invariance test's copies."""
    gen = torch.Generator().manual_seed(t.seed)
    return random_affine_matrices(
        n, gen, rotation_deg=t.rotation_deg, flip_prob=t.flip_prob, shear_deg=t.shear_deg,
        scale_min=t.scale_min, scale_max=t.scale_max, offset=t.offset)


def transformed_copies(images: torch.Tensor, t: InvarianceTransform) -> torch.Tensor:
    """One randomly rotated, flipped, sheared and rescaled copy of each image."""
    return warp(images.float(), invariance_matrices(len(images), t))


def pixel_pca_embedding(
    originals: torch.Tensor, copies: torch.Tensor, n_components: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline: flattened pixels projected on the originals' principal components, unit length."""
    from sklearn.decomposition import PCA

    a = originals.reshape(len(originals), -1).numpy()
    b = copies.reshape(len(copies), -1).numpy()
    pca = PCA(n_components=min(n_components, len(a) - 1, a.shape[1]), random_state=0).fit(a)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    return unit(pca.transform(a)), unit(pca.transform(b))


def score_embeddings(
    originals: np.ndarray, copies: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 5, 10),
    categories: np.ndarray | None = None, image_ids: np.ndarray | None = None,
) -> dict:
    """All metrics of one embedding: invariance always, precision@k and mAP where labelled,
    and precision@10 against the manifest's ``category`` where its classes are large enough
    (:func:`~vo_similarity.evaluate.metrics.category_precision`)."""
    scores: dict = {"invariance": invariance(originals, copies)}
    if categories is not None and image_ids is not None:
        by_category = category_precision(originals, categories, image_ids)
        if by_category:
            scores["category_precision@10"] = by_category
    if any(str(x) for x in labels):
        for k in ks:
            p = precision_at_k(originals, labels, k)
            scores[f"precision@{k}"] = p["macro"]
            scores[f"precision@{k}_micro"] = p["micro"]
            if k == max(ks):
                scores[f"precision@{k}_per_class"] = p["per_class"]
        scores["mAP"] = mean_average_precision(originals, labels)["macro"]
    return scores


def _subsample(data: ImageSet, max_images: int, seed: int) -> ImageSet:
    if len(data) <= max_images:
        return data
    keep = np.sort(np.random.default_rng(seed).choice(len(data), max_images, replace=False))
    categories = None if data.categories is None else data.categories[keep]
    return ImageSet(data.pixels.subset(keep), data.image_ids[keep], data.labels[keep],
                    data.credits[keep], data.names[keep], categories)


def evaluate_model(
    workdir: WorkDir, model_name: str, *, split: str | None = None, device: str = "cpu",
    transform: InvarianceTransform = InvarianceTransform(), max_images: int = 5000,
    grid: bool = True, progress: bool = True,
) -> dict:
    """Evaluate ``model_name`` on ``split`` of its category; write evaluation.json (+ grid PNG).

    Args:
        split: ``all``, ``train`` or ``val``; default ``val`` when the model holds out
            images, else ``all``.
        max_images: evaluate a random subset of at most this many images (the
            metrics compare all pairs).
    """
    model_dir = workdir.model(model_name)
    cfg, model = load_trained(model_dir, device)
    split = split or ("val" if cfg.val_fraction > 0 else "all")
    data = _subsample(load_images(workdir, category=cfg.category, split=split,
                                  val_fraction=cfg.val_fraction), max_images, transform.seed)
    if len(data) < 3:
        raise ValueError(f"only {len(data)} images in split {split!r}: too few to evaluate")
    images = data.pixels.all()
    copies = transformed_copies(images, transform)
    results: dict = {}

    def run(name: str, net, pool: int | None = None) -> np.ndarray:
        a = embed_images(net, images, cfg, pool_rotations=pool)
        b = embed_images(net, copies, cfg, pool_rotations=pool)
        results[name] = score_embeddings(a, b, data.labels, categories=data.categories,
                                         image_ids=data.image_ids)
        log.info("%s: %s", name, {k: v for k, v in results[name].items() if "per_class" not in k and "category" not in k})
        return a

    vectors = run("model", model)
    if cfg.pool_rotations > 1:
        run("model_without_pooling", model, pool=0)
    torch.manual_seed(cfg.seed)
    run("untrained_network", build_model(cfg).to(device).eval())
    pa, pb = pixel_pca_embedding(images, copies)
    results["pixels_pca"] = score_embeddings(pa, pb, data.labels, categories=data.categories,
                                             image_ids=data.image_ids)
    report = {
        "model": model_name, "category": cfg.category, "split": split, "n_images": len(data),
        "invariance_transform": asdict(transform), "config": cfg.to_dict(), "metrics": results,
    }
    with atomic_write(model_dir.evaluation) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    if grid:
        from vo_similarity.evaluate.grid import neighbour_grid

        neighbour_grid(data, vectors, model_dir.evaluation_grid, seed=transform.seed,
                       title=f"{model_name}: queries (left) and nearest neighbours")
    return report
