"""vo-similarity: "show me images like this one" for astronomy archives.

Self-supervised, affine-invariant image embeddings (SimCLR), exact top-k
neighbours, published as an ADQL join in GAVO DaCHS.

The flat public API below is imported lazily, so that ``import vo_similarity``
and ``vo-similarity --help`` stay fast (torch is loaded on first use)::

    from vo_similarity import WorkDir, ingest, builtin_sample, train, TrainConfig
    work = WorkDir("work/builtin")
    ingest(builtin_sample(), work)
    ...

Each name lives in the subpackage of its pipeline stage; see docs/.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it
_WHERE: dict[str, str] = {
    # work directory
    "WorkDir": "vo_similarity.workdir",
    "ModelDir": "vo_similarity.workdir",
    # ingest
    "ImageInput": "vo_similarity.ingest.inputs",
    "ingest": "vo_similarity.ingest.pipeline",
    "builtin_sample": "vo_similarity.ingest.stellarium",
    "write_sky": "vo_similarity.ingest.synthetic",
    "read_manifest": "vo_similarity.ingest.manifest",
    # learn
    "TrainConfig": "vo_similarity.learn.config",
    "train": "vo_similarity.learn.train",
    "embed_workdir": "vo_similarity.learn.embed",
    "evaluate_model": "vo_similarity.learn.evaluate",
    "tune": "vo_similarity.learn.tune",
    "install_shipped": "vo_similarity.learn.pretrained",
    # neighbours
    "find_neighbours": "vo_similarity.neighbours.search",
    "compute_model_neighbours": "vo_similarity.neighbours.store",
    "refine": "vo_similarity.neighbours.refine",
    "outlier_scores": "vo_similarity.neighbours.outlier",
    # publish
    "publish": "vo_similarity.publish.publisher",
}

__all__ = [
    "ImageInput", "ModelDir", "TrainConfig", "WorkDir", "builtin_sample",
    "compute_model_neighbours", "embed_workdir", "evaluate_model", "find_neighbours", "ingest",
    "install_shipped", "outlier_scores", "publish", "read_manifest", "refine", "train", "tune",
    "write_sky",
]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
