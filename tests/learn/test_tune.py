import optuna
import pytest

from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.tune import tune


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


def test_tune_needs_labels_and_a_split(tiny_workdir, tiny_config):
    with pytest.raises(ValueError, match="val_fraction"):
        tune(tiny_workdir, tiny_config, n_trials=1, progress=False)
