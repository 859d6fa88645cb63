"""Training with recorded selections: the selection term, fine-tuning, exact resume, the command."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_train import kill_after_two_epochs
from tiny_work import CLASSES

from vo_similarity.cli import main
from vo_similarity.cli_common import EXIT_FAILURE, EXIT_USAGE
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.train import FINE_TUNE_FILE, selection_pairs, train
from vo_similarity.selections import Selections, write_selections

N_IMAGES = 48  # tests/tiny_work.make_workdir's default; image i has class CLASSES[i % 3]


def marks(query, chosen, similar, created=None) -> Selections:
    n = len(query)
    return Selections(query_id=query, chosen_id=chosen, is_similar=similar,
                      session_id=[""] * n,
                      created=created if created is not None else [np.datetime64("NaT")] * n,
                      model_id=[-1] * n)


def class_selections(n_marks: int = 240, seed: int = 0, n_images: int = N_IMAGES) -> Selections:
    """An astronomer who marks an image similar exactly when it is of the query's class."""
    rng = np.random.default_rng(seed)
    query = rng.integers(0, n_images, n_marks)
    chosen = rng.integers(0, n_images, n_marks)
    return marks(query, chosen, query % len(CLASSES) == chosen % len(CLASSES),
                 created=np.datetime64("2026-01-01T00:00") + np.arange(n_marks).astype("m8[m]"))


def equal_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_without_selections_or_weight_training_is_unchanged(tiny_workdir, tiny_config):
    sel = class_selections()
    plain = train(tiny_workdir, tiny_config, None, progress=False)
    unused = train(tiny_workdir, tiny_config, None, progress=False, selections=sel)
    assert unused.selection_losses == [] and unused.inputs == {}
    assert equal_weights(state(plain.model), state(unused.model))
    used = train(tiny_workdir, tiny_config.replace(selection_weight=1.0), None, progress=False,
                 selections=sel)
    assert len(used.selection_losses) == tiny_config.epochs
    assert all(np.isfinite(used.selection_losses))
    assert not equal_weights(state(plain.model), state(used.model))


def test_pairs_are_merged_by_majority_and_outside_marks_dropped():
    ids = np.array([10, 11, 12, 13, 14])
    sel = marks(query=[10, 10, 10, 10, 10, 11, 11, 12, 99, 12],
                chosen=[11, 11, 11, 12, 12, 13, 13, 12, 10, 14],
                similar=[True, True, False, True, False, True, True, True, True, False])
    pairs = selection_pairs(sel, ids)
    info = pairs.info
    # dropped: 12 against itself, 99 unknown; (10,12) ties and goes; (10,11) similar 2:1
    assert info["dropped_marks"] == 2 and info["ties"] == 1 and info["marks"] == 8
    got = sorted(zip(ids[pairs.query].tolist(), ids[pairs.chosen].tolist(),
                     pairs.similar.tolist()))
    assert got == [(10, 11, True), (11, 13, True), (12, 14, False)]
    assert info["queries"] == 3 and info["similar_pairs"] == 2
    assert pairs.counts.tolist() == [1, 1, 1]
    assert info["latest"] is None
    # the draw takes whole queries, at most per_query pairs of each
    many = selection_pairs(class_selections(400, n_images=20), np.arange(20))
    drawn = many.draw(12, 3, torch.Generator().manual_seed(0))
    assert len(drawn) == 12
    queries = many.query[drawn]
    assert max(np.unique(queries.numpy(), return_counts=True)[1]) <= 3
    with pytest.raises(ValueError, match="none of the 2 selections"):
        selection_pairs(marks([1, 2], [2, 3], [True, False]), np.array([7, 8]))


def test_marks_of_held_out_images_are_dropped_with_a_log_line(tiny_workdir, tiny_config, caplog):
    cfg = tiny_config.replace(val_fraction=0.3, selection_weight=1.0, epochs=1)
    with caplog.at_level(logging.INFO, logger="vo_similarity.learn.train"):
        result = train(tiny_workdir, cfg, tiny_workdir.model("held"), progress=False,
                       selections=class_selections())
    info = result.inputs["selections"]
    assert 0 < info["dropped_marks"] < 240 and info["marks"] + info["dropped_marks"] == 240
    assert f"{info['dropped_marks']} of 240 marks dropped" in caplog.text
    assert "marks dropped" in tiny_workdir.model("held").log.read_text()
    assert info["latest"].startswith("2026-01-01T03:59")
    saved = json.loads((tiny_workdir.model("held").root / FINE_TUNE_FILE).read_text())
    assert saved["selections"]["fingerprint"] == info["fingerprint"]


def test_interrupted_fine_tuning_with_selections_resumes_to_equal_weights(tiny_workdir,
                                                                         tiny_config):
    base = tiny_workdir.model("base")
    train(tiny_workdir, tiny_config, base, progress=False)
    cfg = tiny_config.replace(epochs=4, selection_weight=0.5, selection_batch=24)
    sel = class_selections()

    def run(name, on_epoch=None):
        return train(tiny_workdir, cfg.replace(name=name), tiny_workdir.model(name),
                     progress=False, selections=sel, init_weights=base.weights, on_epoch=on_epoch)

    whole = run("whole")

    class Killed(Exception):
        pass

    def die_after_two(epoch, model, loss):
        if epoch + 1 == 2:
            raise Killed  # after epoch 2's checkpoint, as a kill between epochs would

    with pytest.raises(Killed):
        run("resumed", die_after_two)
    assert not tiny_workdir.model("resumed").weights.exists()
    resumed = run("resumed")
    assert resumed.resumed_from_epoch == 2
    assert resumed.losses == whole.losses and resumed.selection_losses == whole.selection_losses
    assert equal_weights(state(whole.model), state(resumed.model))
    # fine-tuning started from the base model: without it the weights differ
    scratch = train(tiny_workdir, cfg, None, progress=False, selections=sel)
    assert not equal_weights(state(whole.model), state(scratch.model))

    # other selections or other initial weights refuse to resume
    fewer = sel.subset(np.arange(len(sel)) < 200)
    with pytest.raises(ValueError, match="other selections or initial weights.*--restart"):
        train(tiny_workdir, cfg.replace(name="whole"), tiny_workdir.model("whole"),
              progress=False, selections=fewer, init_weights=base.weights)
    with pytest.raises(ValueError, match="other selections or initial weights"):
        train(tiny_workdir, cfg.replace(name="whole"), tiny_workdir.model("whole"),
              progress=False, selections=sel)


def test_weights_of_another_network_are_refused(tiny_workdir, tiny_config):
    base = tiny_workdir.model("base")
    train(tiny_workdir, tiny_config.replace(epochs=1), base, progress=False)
    with pytest.raises(ValueError, match="do not fit this config's network"):
        train(tiny_workdir, tiny_config.replace(width=8), None, progress=False,
              init_weights=base.weights)


def test_config_fields_default_off_and_are_validated():
    cfg = TrainConfig()
    assert (cfg.selection_weight, cfg.selection_temperature, cfg.selection_batch) == (0.0, 0.1, 64)
    old = cfg.to_dict()
    for key in [k for k in old if k.startswith("selection_")]:
        del old[key]
    assert TrainConfig.from_dict(old) == cfg  # a config file from before loads unchanged
    for bad in ({"selection_weight": -1}, {"selection_temperature": 0}, {"selection_batch": 0},
                {"selection_per_query": 0}, {"selection_negative_weight": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            cfg.replace(**bad)


TINY = ["--width", "4", "--image-size", "16", "--batch-size", "16", "--pool-rotations", "2",
        "--precision", "fp32", "--no-progress", "--threads", "1"]


def test_fine_tune_with_selections_through_the_command(tiny_workdir, tmp_path, capsys):
    root = str(tiny_workdir.root)
    exported = write_selections(class_selections(), tmp_path / "marks.ecsv")
    assert main(["train", root, "--model", "base", *TINY, "--epochs", "1"]) == 0
    assert main(["train", root, "--model", "tuned", "--init-from", "base", "--selections",
                 str(exported), "--epochs", "2", "--threads", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    # 4 of the 240 marks are of an image against itself
    assert "selections: 236 marks (4 dropped)" in out and "fine-tuned from model 'base'" in out
    tuned = TrainConfig.load(tiny_workdir.model("tuned").config)
    # the base model's network, the default weight of --selections, the flags' epochs
    assert (tuned.width, tuned.image_size, tuned.selection_weight, tuned.epochs) == (4, 16, 1.0, 2)
    saved = json.loads((tiny_workdir.model("tuned").root / FINE_TUNE_FILE).read_text())
    assert saved["init_weights"]["path"].endswith("models/base/model.pt")
    assert main(["train", root, "--model", "w", *TINY, "--epochs", "1", "--selections",
                 str(exported), "--selection-weight", "0.25"]) == 0
    assert TrainConfig.load(tiny_workdir.model("w").config).selection_weight == 0.25


def test_command_refusals(tiny_workdir, tmp_path, capsys):
    root = str(tiny_workdir.root)
    assert main(["train", root, "--model", "a", "--init-from", "a"]) == EXIT_USAGE
    assert "names the model being trained" in capsys.readouterr().err
    assert main(["train", root, "--model", "a", "--selection-weight", "1"]) == EXIT_USAGE
    assert "--selection-weight needs --selections" in capsys.readouterr().err
    assert main(["train", root, "--model", "a", "--init-from", "missing"]) == EXIT_FAILURE
    assert "run `vo-similarity train" in capsys.readouterr().err
    assert main(["train", root, "--model", "a", *TINY, "--selections",
                 str(tmp_path / "none.ecsv")]) == EXIT_FAILURE
    assert "no such file of selections" in capsys.readouterr().err
    outside = write_selections(marks([500, 501], [502, 503], [True, False]), tmp_path / "o.ecsv")
    assert main(["train", root, "--model", "a", *TINY, "--selections", str(outside)]) \
        == EXIT_FAILURE
    assert "none of the 2 selections" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_fine_tuning_with_selections_resumes_to_identical_weights(tiny_workdir, tmp_path):
    """As tests/learn/test_train.py's kill test, with --selections and --init-from."""
    root = str(tiny_workdir.root)
    exported = write_selections(class_selections(), tmp_path / "marks.xml")
    assert main(["train", root, "--model", "base", *TINY, "--epochs", "1"]) == 0

    def cmd(name):
        return [sys.executable, "-m", "vo_similarity.cli", "train", root, "--model", name,
                "--init-from", "base", "--selections", str(exported), "--epochs", "6",
                "--seed", "5", "--threads", "1", "--no-progress"]

    subprocess.run(cmd("whole"), check=True, capture_output=True)
    killed = tiny_workdir.model("killed")
    kill_after_two_epochs(cmd("killed"), killed)
    subprocess.run(cmd("killed"), check=True, capture_output=True)
    whole = torch.load(tiny_workdir.model("whole").weights, weights_only=True)
    resumed = torch.load(killed.weights, weights_only=True)
    assert equal_weights(whole, resumed)
    assert "resuming" in killed.log.read_text() and "selection term" in killed.log.read_text()
