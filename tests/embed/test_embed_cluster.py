"""Embedding on a real two-worker Dask cluster equals embedding in one process
exactly (vo_similarity.embed.cluster)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vo_similarity.cli import main
from vo_similarity.learn.train import train

distributed = pytest.importorskip("distributed")


def test_embed_cli_on_the_cluster_equals_one_process(tiny_workdir, tiny_config, dask_cluster):
    here, there = tiny_workdir.model("here"), tiny_workdir.model("there")
    train(tiny_workdir, tiny_config, here, progress=False)
    there.ensure()
    for name in ("weights", "config"):
        shutil.copy(getattr(here, name), getattr(there, name))
    common = ["--batch-size", "8", "--no-progress"]
    assert main(["embed", str(tiny_workdir.root), "--model", "here", *common]) == 0
    assert main(["embed", str(tiny_workdir.root), "--model", "there", *common,
                 "--cluster", dask_cluster.scheduler_address]) == 0
    for name in ("embeddings", "embedding_ids"):
        a, b = np.load(getattr(here, name)), np.load(getattr(there, name))
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    assert here.embedding_source.read_text() == there.embedding_source.read_text()
    # both workers embedded batches (48 images, pooled over 4 views: 24 batches of 2)
    with distributed.Client(dask_cluster.scheduler_address) as client:
        log = client.run(lambda dask_worker: len(dask_worker.state.log))
    assert len(log) == 2 and all(n > 0 for n in log.values())


def test_an_unreachable_scheduler_is_one_clear_error(tiny_workdir, tiny_config, capsys):
    train(tiny_workdir, tiny_config, tiny_workdir.model("tiny"), progress=False)
    code = main(["embed", str(tiny_workdir.root), "--model", "tiny", "--no-progress",
                 "--cluster", "tcp://127.0.0.1:9"])
    assert code != 0
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err
    assert not tiny_workdir.model("tiny").embeddings.exists()  # nothing half written
