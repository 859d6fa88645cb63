import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.train import epoch_permutation, train

TRAIN_ARGS = ["--epochs", "6", "--width", "4", "--image-size", "16", "--batch-size", "16",
              "--precision", "fp32", "--seed", "5", "--threads", "1", "--no-progress"]


def _train_cmd(work, name):
    return [sys.executable, "-m", "vo_similarity.cli", "train", str(work.root), "--model", name,
            *TRAIN_ARGS]


def _epoch_of(path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except (FileNotFoundError, EOFError, RuntimeError, pickle.UnpicklingError):  # not yet written
        return 0


def kill_after_two_epochs(command: list[str], killed) -> None:
    """Start a 6-epoch training ``command`` of model dir ``killed``, SIGKILL it once its
    checkpoint holds 2 epochs, and check that it was interrupted mid-way."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while _epoch_of(killed.checkpoint) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = _epoch_of(killed.checkpoint)
    assert 2 <= at_kill < 6, f"the run was not interrupted mid-way (checkpoint epoch {at_kill})"
    assert not killed.weights.exists()


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tiny_workdir):
    work = tiny_workdir
    subprocess.run(_train_cmd(work, "whole"), check=True, capture_output=True)
    killed = work.model("killed")
    kill_after_two_epochs(_train_cmd(work, "killed"), killed)
    subprocess.run(_train_cmd(work, "killed"), check=True, capture_output=True)

    whole = torch.load(work.model("whole").weights, weights_only=True)
    resumed = torch.load(killed.weights, weights_only=True)
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    assert killed.loss_plot.is_file() and killed.log.is_file()
    saved = TrainConfig.load(killed.config)
    assert saved.name == "killed" and saved.epochs == 6 and saved.seed == 5


def test_changed_config_refuses_to_resume(tiny_workdir, tiny_config):
    model_dir = tiny_workdir.model("tiny")
    train(tiny_workdir, tiny_config, model_dir, device="cpu", progress=False)
    with pytest.raises(ValueError, match="--restart"):
        train(tiny_workdir, tiny_config.replace(learning_rate=0.1), model_dir, progress=False)


def test_category_selects_images(tiny_workdir, tiny_config):
    seen = []
    result = train(tiny_workdir, tiny_config.replace(category="small", epochs=1), None,
                   progress=False, on_epoch=lambda e, m, loss: seen.append(loss))
    assert len(seen) == 1 and len(result.losses) == 1 and torch.isfinite(torch.tensor(seen)).all()
    with pytest.raises(ValueError, match="no image has category"):
        train(tiny_workdir, tiny_config.replace(category="nothing"), None, progress=False)


def test_epoch_permutation_shards_without_overlap():
    shards = [epoch_permutation(10, 1, 3, rank, 2) for rank in range(2)]
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())
    assert not torch.equal(epoch_permutation(10, 1, 3), epoch_permutation(10, 1, 4))


@pytest.mark.slow
def test_torchrun_two_processes_without_code_changes(tiny_workdir, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vo_similarity.cli", "-v", "train", str(tiny_workdir.root), "--model", "ddp",
           *TRAIN_ARGS[2:], "--epochs", "2"]
    # TMPDIR: torchrun leaves a torchelastic_* log folder in the temporary directory
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    md = tiny_workdir.model("ddp")
    assert md.weights.is_file() and "x 2, device cpu" in md.log.read_text()
    assert done.stdout.count("final loss") == 1  # rank 0 alone reports
