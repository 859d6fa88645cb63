"""The k-NN backends behind one interface, and how ``"auto"`` picks one.

Every backend is a generator ``(x, k, *, block_size, ...) -> (q0, q1, dist,
pos)`` over query blocks of the database ``x`` (float32 unit vectors in
position order, see :mod:`vo_similarity.neighbours.search`): ``dist`` holds
float32 L2 distances and ``pos`` int64 positions, ``[q1-q0, k]``, nearest
first, ties by smaller position, self excluded. A block's arrays may share
memory with the next block's (the torch backend reuses its result buffers on
the CPU): consumers copy what they keep before asking for the next block.

* ``torch`` (default): :func:`vo_similarity.neighbours.blocks.knn_blocks`, on
  the CPU or a CUDA device, optionally with a bf16/fp16 matrix product.
* ``cuml``: RAPIDS cuML ``NearestNeighbors(algorithm="brute")`` on a GPU.
* ``sklearn``: scikit-learn ``NearestNeighbors(algorithm="brute")``, the
  reference implementation.

``import cuml`` succeeds on machines without a usable GPU and fails only at
the first real call, so :func:`cuml_usable` runs a tiny fit and query.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator

import numpy as np

__all__ = [
    "BACKENDS",
    "cuml_backend",
    "cuml_usable",
    "resolve_backend",
    "sklearn_backend",
    "torch_backend",
    "torch_cuda_usable",
]

LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "cuml", "sklearn")

Blocks = Iterator[tuple[int, int, np.ndarray, np.ndarray]]


@functools.cache
def torch_cuda_usable() -> bool:
    """Whether torch can really run a matrix product on a CUDA device."""
    import torch
    if not torch.cuda.is_available():
        return False
    try:
        a = torch.ones((8, 8), device="cuda")
        return bool(torch.isclose((a @ a)[0, 0].cpu(), torch.tensor(8.0)))
    except Exception as exc:  # noqa: BLE001 - driver or runtime trouble shows up only here
        LOG.info("torch sees CUDA but cannot use it: %s", exc)
        return False


@functools.cache
def cuml_usable() -> bool:
    """Whether cuML imports *and* answers a tiny nearest-neighbour query."""
    try:
        from cuml.neighbors import NearestNeighbors
        x = np.eye(4, dtype=np.float32)
        nn = NearestNeighbors(n_neighbors=2, algorithm="brute", output_type="numpy").fit(x)
        _, idx = nn.kneighbors(x)
        return bool(np.all(np.asarray(idx)[:, 0] == np.arange(4)))
    except Exception as exc:  # noqa: BLE001 - ImportError, or CUDA errors at first use
        LOG.info("cuML is not usable here: %s", exc)
        return False


def resolve_backend(backend: str, device: str | None) -> tuple[str, str | None]:
    """The concrete ``(backend, device)`` for a request.

    ``"auto"`` takes torch on CUDA when torch can use a GPU, cuML when only
    cuML can (e.g. a CPU-only torch beside RAPIDS), and torch on the CPU
    otherwise. Torch is preferred on a GPU because it supports the id
    tie-break natively and the bf16/fp16 path.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if device is not None and not device.startswith("cuda"):
            return "torch", device
        if torch_cuda_usable():
            return "torch", device or "cuda"
        if cuml_usable():
            return "cuml", None
        if device is not None:
            raise RuntimeError(f"device {device!r} requested but no usable GPU was found")
        return "torch", "cpu"
    if backend == "torch":
        if device is None:
            device = "cuda" if torch_cuda_usable() else "cpu"
        return "torch", device
    if backend == "cuml" and not cuml_usable():
        raise RuntimeError("backend 'cuml' requested but cuML is not installed or finds no "
                           "usable GPU (pip install 'vo-similarity[gpu]' on a CUDA machine)")
    return backend, None


def torch_backend(x: np.ndarray, k: int, *, block_size: int, column_block_size: int,
                  device: str = "cpu", precision: str = "fp32") -> Blocks:
    """Blocked matrix product + exact k-selection with torch."""
    import torch

    from vo_similarity.neighbours.blocks import knn_blocks, similarity_to_distance
    xt = torch.from_numpy(x).to(device)
    for q0, q1, sims, pos in knn_blocks(xt, k, block_size=block_size,
                                        column_block_size=column_block_size,
                                        precision=precision):
        yield q0, q1, similarity_to_distance(sims, out=sims).cpu().numpy(), pos.cpu().numpy()


def _drop_self_and_order(dist: np.ndarray, pos: np.ndarray, q0: int, k: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query from its own k+1 results, order ties by position."""
    own = np.arange(q0, q0 + len(pos))[:, None]
    masked = np.where(pos == own, np.inf, dist)
    order = np.lexsort((pos, masked), axis=1)[:, :k]
    return (np.take_along_axis(dist, order, 1).astype(np.float32),
            np.take_along_axis(pos, order, 1).astype(np.int64))


def sklearn_backend(x: np.ndarray, k: int, *, block_size: int, **_: object) -> Blocks:
    """scikit-learn brute force (the reference): k+1 neighbours, self removed."""
    from sklearn.neighbors import NearestNeighbors

    from vo_similarity.neighbours.blocks import block_ranges
    n = len(x)
    nn = NearestNeighbors(n_neighbors=min(k + 1, n), algorithm="brute", metric="euclidean")
    nn.fit(x)
    for q0, q1 in block_ranges(n, block_size):
        dist, pos = nn.kneighbors(x[q0:q1])
        yield (q0, q1, *_drop_self_and_order(dist, pos, q0, k))


def cuml_backend(x: np.ndarray, k: int, *, block_size: int, **_: object) -> Blocks:
    """RAPIDS cuML brute force on one GPU: k+1 neighbours, self removed."""
    from cuml.neighbors import NearestNeighbors

    from vo_similarity.neighbours.blocks import block_ranges
    n = len(x)
    nn = NearestNeighbors(n_neighbors=min(k + 1, n), algorithm="brute",
                          metric="euclidean", output_type="numpy")
    nn.fit(x)
    for q0, q1 in block_ranges(n, block_size):
        dist, pos = nn.kneighbors(x[q0:q1])
        yield (q0, q1, *_drop_self_and_order(np.asarray(dist), np.asarray(pos), q0, k))


RUNNERS = {"torch": torch_backend, "sklearn": sklearn_backend, "cuml": cuml_backend}
