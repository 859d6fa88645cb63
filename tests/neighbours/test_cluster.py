"""The neighbour search on a real two-worker Dask cluster equals the
single-process search exactly (vo_similarity.neighbours.cluster)."""

from __future__ import annotations

import numpy as np
import pytest

from vo_similarity.cli import main
from vo_similarity.neighbours.cluster import connect
from vo_similarity.neighbours.search import find_neighbours
from vo_similarity.workdir import WorkDir

from .conftest import clustered

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster(dask_cluster):
    return dask_cluster


def test_neighbours_cli_on_the_cluster_equals_one_process(tmp_path, cluster, capsys):
    work = WorkDir(tmp_path)
    x = clustered(1500, 24, seed=3)
    ids = np.random.default_rng(1).permutation(5000)[:1500].astype(np.int32)
    for name in ("here", "there"):
        model = work.model(name).ensure()
        np.save(model.embeddings, x)
        np.save(model.embedding_ids, ids)
    common = ["--k", "40", "--block-size", "128", "--column-block-size", "500",
              "--backend", "torch", "--no-progress"]
    assert main(["neighbours", str(tmp_path), "--model", "here", *common]) == 0
    assert main(["neighbours", str(tmp_path), "--model", "there", *common,
                 "--cluster", cluster.scheduler_address]) == 0
    here, there = work.model("here"), work.model("there")
    for name in ("neighbour_ids", "neighbour_dist", "outlier"):
        a, b = np.load(getattr(here, name)), np.load(getattr(there, name))
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    # the work was done by both workers (12 blocks of 128 rows)
    with distributed.Client(cluster.scheduler_address) as client:
        log = client.run(lambda dask_worker: len(dask_worker.state.log))
    assert len(log) == 2 and all(n > 0 for n in log.values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_find_neighbours_on_the_cluster_equals_one_process(cluster, precision):
    x = clustered(700, 16, seed=5)
    ids = np.arange(700)[::-1].copy()
    ref = find_neighbours(x, ids, 25, backend="torch", device="cpu", block_size=64,
                          column_block_size=300, precision=precision)
    got = find_neighbours(x, ids, 25, block_size=64, column_block_size=300,
                          precision=precision, cluster=cluster)
    assert np.array_equal(ref[0], got[0]) and np.array_equal(ref[1], got[1])


def test_a_cluster_runs_the_torch_backend_only(cluster):
    x = clustered(50, 8)
    with pytest.raises(ValueError, match="torch backend"):
        find_neighbours(x, np.arange(50), 5, backend="sklearn", cluster=cluster)


def test_an_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(RuntimeError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        connect("tcp://127.0.0.1:9", timeout="2s")
