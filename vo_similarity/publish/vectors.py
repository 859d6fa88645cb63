"""The published embeddings of a model, as the search service reads them.

Per model one file ``data/vectors/m<id>-<token>.vectors`` below the resdir
(format: :mod:`.search_kernel`): image ids in increasing order and their unit
vectors, float32, C order, and their one-byte codes.  A new file name per
publication: the file is written
completely before the swap (:func:`stage_vectors`), the table
``similarity.vector_files`` names it from the transaction that swaps the
neighbours in (:func:`vo_similarity.publish.copy.swap_in`), and older files are
removed afterwards (:func:`prune_vector_files`), keeping the previous one for
requests that read its name just before the swap.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..workdir import ModelDir, atomic_write
from . import search_kernel
from .dachs import DachsSite

__all__ = ["StagedVectors", "prune_vector_files", "stage_vectors", "vector_folder",
           "write_vector_file"]

log = logging.getLogger(__name__)


def vector_folder(site: DachsSite) -> Path:
    """Where the vector files live (``data/vectors`` below the resdir)."""
    return site.resdir / "data" / "vectors"


def write_vector_file(path: Path, image_ids: np.ndarray, vectors: np.ndarray,
                      *, block_rows: int = 65536, codes: bool = True) -> tuple[int, int]:
    """Write ``image_ids`` and their vectors, renormalised in float32, sorted by id.

    Written in blocks (the embeddings may be memory-mapped and larger than
    memory), atomically: the file appears complete or not at all.  With
    ``codes`` (the default) the one-byte codes of the written vectors follow
    (:func:`.search_kernel.encode`), which the search reads instead of the
    vectors for its first pass.

    Returns:
        ``(N, D)``.
    """
    image_ids = np.asarray(image_ids)
    n, dim = vectors.shape
    if image_ids.shape != (n,):
        raise ValueError(f"{n} vectors but {image_ids.shape} ids")
    order = np.argsort(image_ids, kind="stable")
    ids = image_ids[order].astype(np.int32)
    if n > 1 and not (np.diff(ids) > 0).all():
        raise ValueError("image ids of the embeddings are not unique")
    peak = np.zeros(dim, np.float32)  # largest |x| per dimension, for the codes' scales
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.lib.format.write_array(f, ids)
            _write_header(f, np.float32, (n, dim))
            for start in range(0, n, block_rows):
                block = np.asarray(vectors[order[start:start + block_rows]], np.float32)
                norms = np.linalg.norm(block, axis=1, keepdims=True)
                if not np.isfinite(block).all() or not (norms > 0).all():
                    raise ValueError(f"{path.name}: embeddings contain NaN, inf or zero rows")
                unit = np.ascontiguousarray(block / norms, np.float32)
                peak = np.maximum(peak, np.abs(unit).max(axis=0, initial=0))
                f.write(unit.tobytes())
        if codes:
            _append_codes(Path(tmp), search_kernel.code_scales(peak), block_rows)
        os.chmod(tmp, 0o644)  # DaCHS's server user reads it
    return n, dim


def _write_header(f, dtype, shape: tuple[int, ...]) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False, "shape": shape})


def _append_codes(path: Path, scales: np.ndarray, block_rows: int) -> None:
    """Append the codes of the vectors just written (read back: what is served)."""
    _, written, _ = search_kernel.read_vector_records(str(path))
    n, dim = written.shape
    errors = np.empty(n, np.float32)
    with open(path, "ab") as f:
        _write_header(f, np.uint8, (n, dim))
        for start in range(0, n, block_rows):
            coded = search_kernel.encode(written[start:start + block_rows], scales)
            f.write(np.ascontiguousarray(coded.codes).tobytes())
            errors[start:start + len(coded.errors)] = coded.errors
        for values in (scales, errors):
            _write_header(f, np.float32, values.shape)
            f.write(values.tobytes())
    del written


@dataclass
class StagedVectors:
    model_id: int
    file: str
    n_vectors: int
    dim: int


def stage_vectors(site: DachsSite, model: ModelDir, model_id: int, *, id_offset: int = 0
                  ) -> StagedVectors | None:
    """Write the model's embeddings as a new vector file (None: it has none), their
    ids plus ``id_offset`` (the collection's, :mod:`.collections`)."""
    if not model.embeddings.is_file():
        log.info("model %s has no embeddings.npy: not searchable by vector", model.name)
        return None
    ids = np.load(model.embedding_ids, mmap_mode="r")
    vectors = np.load(model.embeddings, mmap_mode="r")
    if vectors.ndim != 2 or vectors.shape[0] != ids.shape[0]:
        raise ValueError(f"model {model.name}: embeddings {vectors.shape} do not match "
                         f"embedding_ids {ids.shape}")
    folder = vector_folder(site)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"m{int(model_id)}-{secrets.token_hex(6)}.vectors"
    n, dim = write_vector_file(folder / name, np.asarray(ids, np.int64) + int(id_offset),
                               vectors)
    return StagedVectors(int(model_id), name, n, dim)


def prune_vector_files(site: DachsSite, conn) -> list[str]:
    """Remove vector files no model uses, but the newest unused one of each model id
    (a request may have read its name just before the swap)."""
    folder = vector_folder(site)
    if not folder.is_dir():
        return []
    current = {f for (f,) in conn.execute("SELECT file FROM similarity.vector_files")}
    by_model: dict[str, list[Path]] = {}
    for path in folder.glob("m*.vectors"):
        if path.name not in current:
            by_model.setdefault(path.name.split("-", 1)[0], []).append(path)
    removed = []
    for paths in by_model.values():
        paths.sort(key=lambda p: p.stat().st_mtime_ns)
        for path in paths[:-1]:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
