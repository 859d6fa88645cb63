"""tune with held-out selections as the objective."""

import json

import numpy as np
import optuna
import pytest
from tiny_work import CLASSES

from vo_similarity.cli import main
from vo_similarity.cli_common import EXIT_USAGE
from vo_similarity.learn.config import TrainConfig
from vo_similarity.selections import Selections, write_selections
from vo_similarity.tune.tune import suggest_config, tune

PARAMS = {"learning_rate": 1e-3, "temperature": 0.2, "weight_decay": 1e-4, "projection_dim": 64,
          "shear_deg": 5.0, "scale_min": 0.9, "scale_max": 1.1, "offset": 0.05, "stretch": 0.5,
          "noise_std": 0.01, "blur_sigma": 0.5}


def class_selections(n_marks: int = 400, n_images: int = 48, seed: int = 0) -> Selections:
    """Similar exactly when of the query's class (tests/tiny_work.make_workdir: i % 3)."""
    rng = np.random.default_rng(seed)
    query = rng.integers(0, n_images, n_marks)
    chosen = rng.integers(0, n_images, n_marks)
    return Selections(query, chosen, query % len(CLASSES) == chosen % len(CLASSES),
                      [""] * n_marks, [np.datetime64("NaT")] * n_marks, [-1] * n_marks)


@pytest.mark.slow
def test_selections_objective_searches_the_weight_and_writes_the_best(tiny_workdir, tiny_config):
    base = tiny_config.replace(epochs=2)
    sel = class_selections()
    study = tune(tiny_workdir, base, n_trials=2, report_every=1, min_invariance=0.0,
                 progress=False, objective="selections", selections=sel, study_name="sel")
    assert len(study.trials) == 2 and study.user_attrs["objective"] == "selections"
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(0 <= t.value <= 1 for t in complete)
    assert all("selection_weight" in t.params for t in study.trials)
    best = TrainConfig.load(tiny_workdir.tune_best_config)
    assert best.selection_weight in {t.params["selection_weight"] for t in complete}
    info = json.loads(tiny_workdir.tune_best_trial.read_text())
    assert info["objective"] == "selections" and info["selection_accuracy"] == max(
        t.value for t in complete)
    assert info["selection_accuracy_ci_low"] <= info["selection_accuracy"]
    # a study keeps its objective
    with pytest.raises(ValueError, match="tunes 'selections'"):
        tune(tiny_workdir, base.replace(val_fraction=0.4), n_trials=3, study_name="sel",
             progress=False)


def test_selections_objective_needs_scorable_held_out_selections(tiny_workdir, tiny_config):
    with pytest.raises(ValueError, match="needs recorded selections"):
        tune(tiny_workdir, tiny_config, n_trials=1, progress=False, objective="selections")
    only_similar = Selections([0, 1, 2], [3, 4, 5], [True, True, True], [""] * 3,
                              [np.datetime64("NaT")] * 3, [-1] * 3)
    with pytest.raises(ValueError, match="nothing to score"):
        tune(tiny_workdir, tiny_config, n_trials=1, progress=False, objective="selections",
             selections=only_similar, held_out=0.99)
    with pytest.raises(ValueError, match="objective must be one of"):
        tune(tiny_workdir, tiny_config, n_trials=1, progress=False, objective="mAP")


def test_search_space_adds_the_selection_term_and_keeps_a_fine_tuned_network():
    base = TrainConfig(projection_dim=128)
    fixed = optuna.trial.FixedTrial({**PARAMS, "selection_weight": 2.0,
                                     "selection_temperature": 0.2,
                                     "canonical_fill": 0.3, "canonical_zoom_power": 0.5})
    cfg = suggest_config(fixed, base, selections=True)
    assert (cfg.selection_weight, cfg.selection_temperature, cfg.projection_dim) == (2.0, 0.2, 64)
    assert suggest_config(fixed, base).selection_weight == 0.0
    assert suggest_config(fixed, base, selections=True, fine_tune=True).projection_dim == 128


def test_command_checks_its_selection_options(tiny_workdir, tmp_path, capsys):
    root = str(tiny_workdir.root)
    assert main(["tune", root, "--objective", "selections"]) == EXIT_USAGE
    assert "needs --selections" in capsys.readouterr().err
    exported = write_selections(class_selections(), tmp_path / "marks.ecsv")
    assert main(["tune", root, "--selections", str(exported)]) == EXIT_USAGE
    assert "--objective selections only" in capsys.readouterr().err
    assert main(["tune", root, "--objective", "selections", "--selections", str(exported),
                 "--held-out", "1.5"]) == EXIT_USAGE


@pytest.mark.slow
def test_tune_selections_through_the_command(tiny_workdir, tmp_path, capsys):
    root = str(tiny_workdir.root)
    exported = write_selections(class_selections(), tmp_path / "marks.ecsv")
    tiny = ["--width", "4", "--image-size", "16", "--batch-size", "16", "--epochs", "1",
            "--pool-rotations", "2", "--precision", "fp32", "--no-progress", "--threads", "1"]
    assert main(["train", root, "--model", "base", *tiny]) == 0
    capsys.readouterr()
    assert main(["tune", root, "--model", "tuned", "--objective", "selections", "--selections",
                 str(exported), "--init-from", "base", "--trials", "1", "--epochs", "1",
                 "--min-invariance", "0", "--threads", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "selection accuracy" in out and f"--selections {exported} --init-from base" in out
    best = TrainConfig.load(tiny_workdir.tune_best_config)
    # the base model's network, so that its weights fit
    assert (best.name, best.width, best.image_size, best.epochs) == ("tuned", 4, 16, 1)
    assert best.selection_weight > 0
