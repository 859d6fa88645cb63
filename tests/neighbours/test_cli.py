import numpy as np

from vo_similarity.cli import main
from vo_similarity.neighbours.outlier import outlier_scores
from vo_similarity.neighbours.search import find_neighbours
from vo_similarity.workdir import WorkDir

from .conftest import clustered


def test_cli_round_trip(tmp_path, capsys):
    model = WorkDir(tmp_path).model("tiny").ensure()
    x = clustered(150, 12, seed=9)
    ids = np.arange(150, dtype=np.int32)[::-1].copy()
    np.save(model.embeddings, x)
    np.save(model.embedding_ids, ids)
    status = main(["neighbours", str(tmp_path), "--model", "tiny", "--k", "20",
                   "--block-size", "64", "--backend", "torch", "--outlier-neighbours", "5",
                   "--no-progress"])
    assert status == 0
    assert "150 images, 20 neighbours each" in capsys.readouterr().out
    got_ids, got_dist = np.load(model.neighbour_ids), np.load(model.neighbour_dist)
    assert got_ids.dtype == np.int32 and got_ids.shape == (150, 20)
    assert got_dist.dtype == np.float32 and got_dist.shape == (150, 20)
    ref_ids, ref_dist = find_neighbours(x, ids, 20, backend="torch", block_size=64)
    assert np.array_equal(got_ids, ref_ids)
    np.testing.assert_array_equal(np.load(model.outlier), outlier_scores(ref_dist, 5))
    assert sorted(p.name for p in model.root.iterdir()) == [
        "embedding_ids.npy", "embeddings.npy", "neighbours_dist.npy", "neighbours_ids.npy",
        "outlier.npy"]


def test_cli_k_larger_than_n(tmp_path):
    model = WorkDir(tmp_path).model("m").ensure()
    np.save(model.embeddings, clustered(8, 4))
    np.save(model.embedding_ids, np.arange(8, dtype=np.int32))
    assert main(["neighbours", str(tmp_path), "--model", "m", "--no-progress"]) == 0
    assert np.load(model.neighbour_ids).shape == (8, 7)


def test_cli_reports_missing_embeddings(tmp_path, capsys):
    assert main(["neighbours", str(tmp_path), "--model", "none", "--no-progress"]) == 1
    assert "run 'vo-similarity embed'" in capsys.readouterr().err
    assert not (tmp_path / "models" / "none").exists() or not any(
        (tmp_path / "models" / "none").iterdir())


def test_cli_module_and_package_stay_light():
    import subprocess
    import sys
    code = ("import sys, vo_similarity.neighbours.cli, vo_similarity.neighbours as n; "
            "assert 'torch' not in sys.modules and 'numba' not in sys.modules; "
            "assert callable(n.refine) and callable(n.find_neighbours)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_openmp_threads_wait_passively_unless_the_user_chose():
    """The policy must reach OpenMP before torch loads it, and a user's own value stays."""
    import os
    import subprocess
    import sys
    code = ("import os, sys; from vo_similarity.cli_common import passive_openmp_wait; "
            "passive_openmp_wait(); import torch; "
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert got == ["PASSIVE", "True"]
    got = subprocess.run([sys.executable, "-c", code], env=dict(env, OMP_WAIT_POLICY="ACTIVE"),
                         capture_output=True, text=True, check=True).stdout.split()
    assert got == ["ACTIVE", "True"]
    late = ("import os, torch; from vo_similarity.cli_common import passive_openmp_wait; "
            "passive_openmp_wait(); print(os.environ.get('OMP_WAIT_POLICY'))")
    got = subprocess.run([sys.executable, "-c", late], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert got == ["None"]  # too late to act: torch's OpenMP has read its settings
