"""vo-similarity: "show me images like this one" for astronomy archives.

Self-supervised, affine-invariant image embeddings (SimCLR), exact top-k
neighbours, published as an ADQL join in GAVO DaCHS.

The flat public API below is imported lazily, so that ``import vo_similarity``
and ``vo-similarity --help`` stay fast (torch is loaded on first use)::

    from vo_similarity import WorkDir, ingest_images, builtin_sample, train, TrainConfig
    work = WorkDir("work/builtin")
    ingest_images(builtin_sample(), work)
    ...

Each name lives in the subpackage of its pipeline stage; see docs/.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it, and the name there where it differs.
#: A public name never equals a subpackage's: importing ``vo_similarity.tune``
#: binds the attribute ``tune`` of this package to the subpackage.
_WHERE: dict[str, str | tuple[str, str]] = {
    # work directory
    "WorkDir": "vo_similarity.workdir",
    "ModelDir": "vo_similarity.workdir",
    # ingest
    "ImageInput": "vo_similarity.ingest.inputs",
    "ingest_images": ("vo_similarity.ingest.pipeline", "ingest"),
    "builtin_sample": "vo_similarity.ingest.stellarium",
    "write_sky": "vo_similarity.ingest.synthetic",
    "read_manifest": "vo_similarity.ingest.manifest",
    # learn (train)
    "TrainConfig": "vo_similarity.learn.config",
    "train": "vo_similarity.learn.train",
    "install_shipped": "vo_similarity.learn.pretrained",
    # embed
    "embed_workdir": "vo_similarity.embed.embed",
    # evaluate
    "evaluate_model": "vo_similarity.evaluate.evaluate",
    "evaluate_selections": "vo_similarity.evaluate.selections",
    # selections (recorded by the web page)
    "Selections": "vo_similarity.selections.source",
    "read_selections": "vo_similarity.selections.source",
    "write_selections": "vo_similarity.selections.source",
    "selection_scores": "vo_similarity.selections.metrics",
    "paired_improvement": "vo_similarity.selections.metrics",
    # improve
    "ImproveOptions": "vo_similarity.improve.improve",
    "improve_model": ("vo_similarity.improve.improve", "improve"),
    # tune
    "tune_workdir": ("vo_similarity.tune.tune", "tune"),
    # neighbours
    "find_neighbours": "vo_similarity.neighbours.search",
    "compute_model_neighbours": "vo_similarity.neighbours.store",
    "update_neighbours": "vo_similarity.neighbours.update",
    "update_model_neighbours": "vo_similarity.neighbours.store",
    "refine": "vo_similarity.neighbours.refine",
    "outlier_scores": "vo_similarity.neighbours.outlier",
    # publish
    "publish_workdir": ("vo_similarity.publish.publisher", "publish"),
}

__all__ = [
    "ImageInput", "ImproveOptions", "ModelDir", "Selections", "TrainConfig", "WorkDir",
    "builtin_sample", "compute_model_neighbours", "embed_workdir", "evaluate_model",
    "evaluate_selections", "find_neighbours", "improve_model", "ingest_images",
    "install_shipped", "outlier_scores", "paired_improvement", "publish_workdir",
    "read_manifest", "read_selections", "refine", "selection_scores", "train", "tune_workdir",
    "update_model_neighbours", "update_neighbours", "write_selections", "write_sky",
]


def __getattr__(name: str):
    if name in _WHERE:
        where = _WHERE[name]
        module, attr = where if isinstance(where, tuple) else (where, name)
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
