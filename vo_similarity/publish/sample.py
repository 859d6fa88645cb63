"""Work directories for tests and benchmarks of publishing and of the client.

:func:`make_sample_workdir` is small, complete and synthetic: random unit
vectors stand in for embeddings (saved as the models' ``embeddings.npy``, so
the search service has something to search); their exact neighbours are
computed (blocked matrix products and a k-selection), so tests can compare what
DaCHS returns with what the files say.  Positions are spread over the sky like
real pointings; a few images share a target and position, as repeated
observations of one object do.

:func:`builtin_workdir` is the built-in real sample with the shipped model,
what the client's tests, docs and benchmarks search.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..workdir import WorkDir

__all__ = ["builtin_workdir", "make_sample_workdir"]

AUTHORITY = "vo-similarity.example"


def _write_png(path: Path, rng: np.random.Generator, size: int = 16) -> None:
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)


def make_sample_workdir(root: str | Path, n: int = 60, k: int = 20, *,
                        models: tuple[str, ...] = ("sample",), dim: int = 16,
                        seed: int = 0, previews: bool = True,
                        authority: str = AUTHORITY, collection: str | None = None
                        ) -> WorkDir:
    """Write a work directory with ``n`` images and each model's neighbours.

    Args:
        root: the folder to create.
        n: number of images.
        k: neighbours per image (< n).
        models: model names; each gets its own random embedding.
        dim: embedding dimension.
        seed: random seed (the same seed gives the same files).
        previews: write PNG previews (16x16 noise); a FITS-like source file is
            written for every third image, to exercise access_url.
        authority: IVOA authority of the publisher DIDs.
        collection: the collection the manifest names (its obs_ids, and so its
            DIDs, start with that name); None: none (the default collection).

    Returns:
        The work directory.
    """
    from ..ingest.manifest import write_manifest
    from ..neighbours.search import find_neighbours

    if not 0 < k < n:
        raise ValueError(f"need 0 < k < n, got k={k}, n={n}")
    work = WorkDir(root).ensure()
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    targets = [f"NGC {1000 + i}" for i in range(n)]
    for i in range(1, n, 7):  # repeated observations of the previous target
        ra[i], dec[i], targets[i] = ra[i - 1], dec[i - 1], targets[i - 1]
    work.previews.mkdir(exist_ok=True)
    sources = work.root / "sources"
    sources.mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        obs_id = f"{collection or 'sample'}-{i:06d}"
        source = ""
        if previews:
            _write_png(work.preview(i), rng)
            if i % 3 == 0:
                path = sources / f"{obs_id}.fits"
                path.write_bytes(b"SIMPLE  =                    T" + b" " * 2850)
                source = str(path)
        rows.append({
            "image_id": i, "obs_publisher_did": f"ivo://{authority}/~?{obs_id}",
            "obs_id": obs_id, "target_name": targets[i], "s_ra": ra[i], "s_dec": dec[i],
            "s_fov": float(rng.uniform(0.05, 2.0)),
            "category": "galaxy" if i % 2 else "nebula", "credit": "vo-similarity test",
            "source_path": source, "label": ["ring", "disc", "blob"][i % 3],
        })
    write_manifest(work.manifest, rows, {"authority": authority, **(
        {"collection": collection} if collection else {})})

    for m, name in enumerate(models):
        model = work.model(name).ensure()
        vectors = rng.normal(size=(n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        order = rng.permutation(n).astype(np.int32)  # rows need not be in id order
        ids, dist = find_neighbours(vectors, order, k, backend="torch")
        np.save(model.embeddings, vectors)  # row r is image order[r]
        np.save(model.embedding_ids, order)
        np.save(model.neighbour_ids, ids)
        np.save(model.neighbour_dist, dist)
        np.save(model.outlier, dist[:, -1].copy())
        model.config.write_text(json.dumps({
            "name": name, "category": "galaxy" if m % 2 else "", "lr": 0.001 * (m + 1),
            "temperature": 0.2, "batch_size": 64, "epochs": 3}))
        model.evaluation.write_text(json.dumps({"precision_at_10": 0.1, "map": 0.05}))
    return work


def builtin_workdir(root: str | Path, *, model: str = "builtin", k: int = 1000,
                    precision: str = "fp32", synthetic: int = 0) -> WorkDir:
    """The built-in real sample with the shipped model, embedded, with its neighbours.

    What the client's tests and benchmarks publish (ingest, the shipped
    checkpoint, embed, neighbours: the demo's pipeline without training).

    Args:
        root: the work directory to create.
        model: name of the model folder.
        k: neighbours per image (capped at N - 1).
        precision: the embedding precision written into the model's config;
            float32 by default, so that the embeddings do not depend on the CPU
            (with ``"auto"`` a CPU with AMX or AVX512-BF16 embeds in bfloat16).
        synthetic: images of the synthetic sky added after the built-in ones
            (e.g. to have more than 1000 images, so that k = 1000 is reached).

    Raises:
        FileNotFoundError: Debian's stellarium-data (the built-in sample) is missing.
    """
    from ..embed.embed import embed_workdir
    from ..ingest.pipeline import ingest
    from ..ingest.stellarium import builtin_sample
    from ..learn.pretrained import install_shipped
    from ..neighbours.store import compute_model_neighbours

    inputs = builtin_sample()
    work = WorkDir(root)
    if synthetic:
        from ..ingest.synthetic import write_sky

        inputs += write_sky(work.synthetic, synthetic)
    ingest(inputs, work, progress=False)
    install_shipped(work, model)
    config = work.model(model).config
    config.write_text(json.dumps({**json.loads(config.read_text()), "precision": precision},
                                 indent=1))
    embed_workdir(work, model, progress=False)
    compute_model_neighbours(work.model(model), k, progress=False)
    return work
