import optuna
import pytest

from vo_similarity.learn.config import TrainConfig
from vo_similarity.tune.tune import suggest_config, tune


@pytest.mark.slow
def test_two_trials_then_resume_from_sqlite(tiny_workdir, tiny_config):
    base = tiny_config.replace(val_fraction=0.4, epochs=2)
    study = tune(tiny_workdir, base, n_trials=2, report_every=1, min_invariance=0.0,
                 progress=False)
    assert len(study.trials) == 2
    assert tiny_workdir.tune_study.is_file()
    first = [t.params for t in study.trials]
    study = tune(tiny_workdir, base, n_trials=3, report_every=1, min_invariance=0.0,
                 progress=False)
    assert len(study.trials) == 3
    assert [t.params for t in study.trials[:2]] == first
    assert all(t.state.is_finished() for t in study.trials)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert completed and all("invariance" in t.user_attrs for t in completed)
    best = TrainConfig.load(tiny_workdir.tune_best_config)
    assert best.name == "tiny" and best.epochs == 2
    assert best.learning_rate in {t.params["learning_rate"] for t in completed}
    # the canonical frame is on by default, so its settings are searched too
    assert best.canonical.zoom_power in {t.params["canonical_zoom_power"] for t in completed}


def test_search_space_leaves_a_disabled_canonical_frame_alone():
    params = {"learning_rate": 1e-3, "temperature": 0.2, "weight_decay": 1e-4,
              "projection_dim": 64, "shear_deg": 5.0, "scale_min": 0.9, "scale_max": 1.1,
              "offset": 0.05, "stretch": 0.5, "noise_std": 0.01, "blur_sigma": 0.5}
    base = TrainConfig(canonical={"enabled": False})
    cfg = suggest_config(optuna.trial.FixedTrial(params), base)
    assert cfg.canonical == base.canonical and cfg.learning_rate == 1e-3
    with_frame = suggest_config(optuna.trial.FixedTrial(
        {**params, "canonical_fill": 0.3, "canonical_zoom_power": 0.5}), TrainConfig())
    assert (with_frame.canonical.fill, with_frame.canonical.zoom_power) == (0.3, 0.5)


def test_tune_needs_labels_and_a_split(tiny_workdir, tiny_config):
    with pytest.raises(ValueError, match="val_fraction"):
        tune(tiny_workdir, tiny_config, n_trials=1, progress=False)


@pytest.mark.slow
def test_category_objective_scores_the_tuning_half(tiny_workdir, tiny_config):
    # the tiny manifest's categories "small" / "large" have 24 images each; all 48 train
    study = tune(tiny_workdir, tiny_config.replace(epochs=2), n_trials=2, report_every=1,
                 min_invariance=0.0, progress=False, objective="category",
                 study_name="category")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and study.user_attrs["objective"] == "category"
    for t in complete:
        assert 0 <= t.value <= 1 and 0 <= t.user_attrs["category_precision@10_held_out"] <= 1
    assert TrainConfig.load(tiny_workdir.tune_best_config).val_fraction == 0.0


def test_category_objective_needs_large_enough_categories(tiny_workdir, tiny_config):
    from astropy.table import Table

    table = Table.read(tiny_workdir.manifest)
    table["category"] = [f"c{i}" for i in range(len(table))]  # 48 classes of one
    table.write(tiny_workdir.manifest, overwrite=True, format="ascii.ecsv")
    with pytest.raises(ValueError, match="at least 20 images"):
        tune(tiny_workdir, tiny_config, n_trials=1, progress=False, objective="category")
