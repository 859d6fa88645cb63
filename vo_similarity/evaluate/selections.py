"""Score a model against recorded selections, beside the two baselines.

``vo-similarity evaluate WORK --model M --selections SOURCE`` (docs/selections.md):
the marks astronomers recorded are the test set. The model's embedding of its
images is scored with :func:`vo_similarity.selections.metrics.selection_scores`
(pairwise ranking accuracy of the marked images, recall@k of the similar ones,
bootstrap intervals over queries), and so are the same images embedded by the
untrained network of the same configuration and by raw pixels + PCA, as
``evaluate`` does for labels (:mod:`.evaluate`), with the paired difference of
the model to each baseline.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import torch

from vo_similarity.embed.embed import embed_images, load_trained
from vo_similarity.evaluate.evaluate import pixel_pca_embedding
from vo_similarity.learn.data import PixelStore, load_images
from vo_similarity.learn.model import build_model
from vo_similarity.selections import (
    Selections,
    paired_improvement,
    read_selections,
    selection_scores,
)
from vo_similarity.workdir import PIXELS_DIGEST, ModelDir, WorkDir, atomic_write, file_sha256

__all__ = ["REPORT_NAME", "current_embeddings", "evaluate_selections"]

log = logging.getLogger(__name__)

#: the report beside the model (models/M/evaluation_selections.json)
REPORT_NAME = "evaluation_selections.json"
#: at most this many images fit the baseline's principal components
PCA_FIT_IMAGES = 5000


def current_embeddings(work: WorkDir, model_dir: ModelDir) -> bool:
    """Whether ``embeddings.npy`` is the model's embedding of today's pixels.

    True when the three files of ``vo-similarity embed`` are there, name the
    pixel store's present SHA-256, and are newer than the weights.
    """
    paths = (model_dir.embeddings, model_dir.embedding_ids, model_dir.embedding_source)
    if not all(p.is_file() for p in paths) or not model_dir.weights.is_file():
        return False
    if model_dir.embeddings.stat().st_mtime < model_dir.weights.stat().st_mtime:
        return False
    try:
        source = json.loads(model_dir.embedding_source.read_text())
    except (OSError, ValueError):
        return False
    return source.get(PIXELS_DIGEST) == file_sha256(work.pixels)


def _pixels_of(work: WorkDir, ids: np.ndarray) -> PixelStore:
    """The pixel rows of ``ids`` (every one must be in the manifest)."""
    data = load_images(work)
    at = np.minimum(np.searchsorted(data.image_ids, ids), len(data) - 1)
    if not np.array_equal(data.image_ids[at], ids):
        raise ValueError(f"the embeddings of {work.root} name images the manifest lacks: "
                         "rerun `vo-similarity embed`")
    return data.pixels.subset(at)


def _pixels_pca(pixels: PixelStore, seed: int) -> np.ndarray:
    """Baseline vectors: every image's pixels on the principal components of at most
    PCA_FIT_IMAGES of them (:func:`.evaluate.pixel_pca_embedding`)."""
    n = len(pixels)
    fit = (np.arange(n) if n <= PCA_FIT_IMAGES else
           np.sort(np.random.default_rng(seed).choice(n, PCA_FIT_IMAGES, replace=False)))
    return pixel_pca_embedding(pixels[fit], pixels.all())[1]


def evaluate_selections(
    workdir: WorkDir | str | os.PathLike[str], model_name: str,
    source_or_selections: Selections | str | os.PathLike[str], *, k: int = 10,
    site=None, device: str = "cpu", n_boot: int = 1000, seed: int = 0,
    progress: bool = False,
) -> dict:
    """Score ``model_name`` and the baselines on recorded selections; write the report.

    Args:
        workdir: the work directory.
        model_name: a trained model of it.
        source_or_selections: :class:`Selections`, or a source for
            :func:`~vo_similarity.selections.read_selections` (``"service"``, a
            TAP URL, a file).
        k: the k of recall@k.
        site: the DaCHS site of ``"service"`` (default: from its settings file).
        device: where torch embeds.
        n_boot, seed: the bootstrap of the intervals.

    The model's vectors are its ``embeddings.npy`` when they are current
    (:func:`current_embeddings`), else its images (those of its category) are
    embedded here, without writing them. The images are the model's: marks on
    other images are dropped and counted.

    Returns:
        The report, also written to ``models/M/evaluation_selections.json``:
        ``{"model", "source", "k", "n_images", "n_selections", "embeddings":
        "embeddings.npy" or "computed", "metrics": {"model",
        "untrained_network", "pixels_pca": selection_scores(...)}, "versus":
        {baseline: paired_improvement(baseline -> model)}}``.

    Raises:
        ValueError: no selection concerns two of the model's images.
    """
    work = workdir if isinstance(workdir, WorkDir) else WorkDir(workdir)
    model_dir = work.model(model_name)
    cfg, model = load_trained(model_dir, device)
    if isinstance(source_or_selections, Selections):
        sel, source = source_or_selections, "selections given"
    else:
        from vo_similarity.publish.collections import collection_of

        sel = read_selections(source_or_selections, site=site, collection=collection_of(work))
        source = str(source_or_selections)

    if current_embeddings(work, model_dir):
        vectors = np.load(model_dir.embeddings)
        ids = np.load(model_dir.embedding_ids).astype(np.int64)
        pixels, how = _pixels_of(work, ids), "embeddings.npy"
    else:
        data = load_images(work, category=cfg.category)
        ids, pixels, how = data.image_ids.astype(np.int64), data.pixels, "computed"
        vectors = embed_images(model, pixels, cfg, progress=progress)
    usable = sel.restrict(ids)
    usable = usable.subset(usable.query_id != usable.chosen_id)
    if not len(usable):
        raise ValueError(f"none of the {len(sel)} selections from {source} marks one of model "
                         f"{model_name!r}'s {len(ids)} images for another")
    log.info("%d of %d selections concern model %s's %d images (%s)", len(usable), len(sel),
             model_name, len(ids), how)

    def score(v: np.ndarray) -> dict:
        return selection_scores(v, ids, sel, k=k, n_boot=n_boot, seed=seed)

    embedded = {"model": vectors}
    torch.manual_seed(cfg.seed)  # the untrained network evaluate_model compares with
    embedded["untrained_network"] = embed_images(build_model(cfg).to(device).eval(), pixels, cfg,
                                                 progress=progress)
    embedded["pixels_pca"] = _pixels_pca(pixels, seed)
    metrics = {name: score(v) for name, v in embedded.items()}
    versus = {name: paired_improvement(embedded[name], vectors, ids, sel, n_boot=n_boot,
                                       seed=seed) for name in ("untrained_network", "pixels_pca")}
    for name, m in metrics.items():
        log.info("%s: pairwise accuracy %.3f, recall@%d %.3f", name,
                 m["pairwise_accuracy"]["value"], k, m["recall@k"]["value"])
    report = {"model": model_name, "source": source, "k": k, "n_images": len(ids),
              "n_selections": len(sel), "embeddings": how, "metrics": metrics,
              "versus": versus}
    path = model_dir.root / REPORT_NAME
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report
