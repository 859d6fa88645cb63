"""The neighbour search on a Dask cluster: query blocks as tasks, the embeddings
on every worker.

One machine's cores or GPU are not always enough for N = 10⁶ and beyond. Dask
distributed (Rocklin 2015, "Dask: Parallel Computation with Blocked
algorithms and Task Scheduling") runs the work instead of a home-made
scheduler: the embeddings are scattered once to every worker, and each task is
one query block of the single-process engine,
:func:`vo_similarity.neighbours.blocks.knn_query_block`. The arithmetic of a
block is the same wherever it runs, so the result equals the single-process
one bit for bit on workers with the same torch build and CPU kind (a test runs
a two-worker ``LocalCluster``).

At most ``2 x (threads of the cluster)`` blocks are in flight, so the finished
blocks waiting to be written stay few whatever N is. Workers with GPUs
compute on them when ``device="cuda"`` is asked for (``dask-cuda`` starts such
workers, one per GPU).
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np

from vo_similarity.neighbours.blocks import block_ranges

__all__ = ["as_finished", "cluster_backend", "connect", "session"]

LOG = logging.getLogger(__name__)


def connect(cluster, *, timeout: str = "20s"):
    """A ``distributed.Client`` for ``cluster``: a scheduler address
    (``tcp://host:8786``), a ``Client`` (used as it is) or a cluster object
    such as ``LocalCluster``.

    Raises:
        RuntimeError: when Dask distributed is not installed or the scheduler
            cannot be reached, saying which address was tried.
    """
    try:
        from distributed import Client
    except ImportError:
        raise RuntimeError("--cluster needs Dask distributed: pip install "
                           "'vo-similarity[cluster]'") from None
    if isinstance(cluster, Client):
        return cluster
    try:
        return Client(cluster, timeout=timeout, set_as_default=False)
    except OSError as exc:
        raise RuntimeError(f"cannot reach the Dask scheduler at {cluster!r}: {exc}") from None


@contextlib.contextmanager
def session(cluster, what: str):
    """``(client, threads)`` for ``cluster`` (what :func:`connect` takes), logged as
    ``what``; a client made here is closed afterwards, one given is left open."""
    client = connect(cluster)
    try:
        threads = max(1, sum(client.nthreads().values()))
        LOG.info("%s on the Dask cluster %s: %d workers, %d threads", what,
                 client.scheduler.address, len(client.nthreads()), threads)
        yield client, threads
    finally:
        if client is not cluster:
            client.close()


def as_finished(client, submit, items, in_flight: int):
    """The results of ``submit(item)`` for every item, as they finish (any order),
    with at most ``in_flight`` futures running: a finished one makes room for the
    next, so the results waiting on the client stay few whatever the item count."""
    from distributed import as_completed

    pending = iter(items)
    running = as_completed([submit(item) for _, item in zip(range(in_flight), pending)],
                           loop=client.loop)
    for future in running:
        result = future.result()
        future.release()
        nxt = next(pending, None)
        if nxt is not None:
            running.add(submit(nxt))
        yield result


def _block_task(x: np.ndarray, q0: int, q1: int, k: int, column_block_size: int,
                device: str, precision: str) -> tuple[int, int, np.ndarray, np.ndarray]:
    """One query block on a worker, as :func:`..backends.torch_backend` computes it."""
    import torch

    from vo_similarity.neighbours.blocks import knn_query_block, similarity_to_distance
    xt = torch.from_numpy(x).to(device)
    sims, pos = knn_query_block(xt, q0, q1, k, column_block_size=column_block_size,
                                precision=precision)
    return q0, q1, similarity_to_distance(sims).cpu().numpy(), pos.cpu().numpy()


def cluster_backend(x: np.ndarray, k: int, *, block_size: int, column_block_size: int,
                    cluster, device: str = "cpu", precision: str = "fp32"):
    """The blocks of :func:`..backends.torch_backend`, computed on a Dask cluster.

    Args:
        x: ``[N, D]`` float32 unit vectors in position order.
        k: neighbours per row.
        block_size: query rows per task.
        column_block_size: database rows per similarity block inside a task.
        cluster: what :func:`connect` takes.
        device: torch device on the workers.
        precision: as for the torch backend.

    Yields:
        ``(q0, q1, dist, pos)`` as the blocks finish (in any order).
    """
    with session(cluster, "neighbours") as (client, threads):
        t0 = time.perf_counter()
        shared = client.scatter(x, broadcast=True, hash=False)
        LOG.info("embeddings (%.0f MiB) sent to every worker in %.1f s",
                 x.nbytes / 2**20, time.perf_counter() - t0)

        def submit(block: tuple[int, int]):
            q0, q1 = block
            return client.submit(_block_task, shared, q0, q1, k, column_block_size, device,
                                 precision, pure=False)

        blocks = block_ranges(len(x), block_size)
        for q0, q1, dist, pos in as_finished(client, submit, blocks, 2 * threads):
            LOG.debug("query block %d:%d back from the cluster", q0, q1)
            yield q0, q1, dist, pos
