"""Hyperparameter search with Optuna (Akiba et al. 2019, arXiv:1907.10902).

Objective: macro precision@10 on the held-out split; constraint: the held-out
invariance must reach ``min_invariance`` (TPE's constrained mode through
``Trial.set_constraint``). Unpromising trials are pruned on their intermediate
precision@10 by the median rule. The study lives in ``WORK/tune/study.sqlite``,
so a killed search resumes: finished trials are kept, and a trial whose
process died is retried (heartbeat + ``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import numpy as np

from vo_similarity.embed.embed import embed_images
from vo_similarity.evaluate.evaluate import (
    InvarianceTransform,
    score_embeddings,
    transformed_copies,
)
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.data import load_images
from vo_similarity.learn.train import train
from vo_similarity.workdir import WorkDir, atomic_write

__all__ = ["suggest_config", "tune"]

log = logging.getLogger(__name__)


def suggest_config(trial, base: TrainConfig) -> TrainConfig:
    """The search space: optimisation and augmentation ranges (rotation stays full-circle),
    and, when ``base`` uses the canonical frame, its fill and the share of size it normalises."""
    canonical = {}
    if base.canonical.enabled:
        canonical = {"fill": trial.suggest_float("canonical_fill", 0.25, 0.5),
                     "zoom_power": trial.suggest_float("canonical_zoom_power", 0.4, 1.0)}
    return base.replace(
        canonical=canonical,
        learning_rate=trial.suggest_float("learning_rate", 3e-4, 5e-3, log=True),
        temperature=trial.suggest_float("temperature", 0.05, 0.5, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        projection_dim=trial.suggest_categorical("projection_dim", [64, 128, 256]),
        augment={
            "shear_deg": trial.suggest_float("shear_deg", 0.0, 20.0),
            "scale_min": trial.suggest_float("scale_min", 0.6, 0.95),
            "scale_max": trial.suggest_float("scale_max", 1.05, 1.4),
            "offset": trial.suggest_float("offset", 0.0, 0.15),
            "stretch": trial.suggest_float("stretch", 0.0, 1.0),
            "noise_std": trial.suggest_float("noise_std", 0.0, 0.08),
            "blur_sigma": trial.suggest_float("blur_sigma", 0.0, 2.0),
        },
    )


def _feasible(trial) -> bool:
    values = trial.constraints.values()
    return bool(values) and all(v <= 0 for v in values)


def tune(
    workdir: WorkDir,
    base: TrainConfig,
    *,
    n_trials: int = 20,
    study_name: str = "simclr",
    min_invariance: float = 0.9,
    report_every: int = 5,
    device: str = "cpu",
    timeout: float | None = None,
    progress: bool = True,
):
    """Run (or resume) the search until ``n_trials`` trials have finished; write the best config.

    Args:
        workdir: the work directory; its manifest must have labels on the held-out split.
        base: fixed settings (architecture, epochs per trial, val_fraction, category...).
        n_trials: total finished trials wanted, counting those of earlier runs.
        min_invariance: the held-out invariance a trial must reach to be feasible.
        report_every: epochs between intermediate reports for pruning.

    Returns:
        The :class:`optuna.Study`.
    """
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if base.val_fraction <= 0:
        raise ValueError("tuning needs a held-out split: set val_fraction > 0")
    val = load_images(workdir, category=base.category, split="val", val_fraction=base.val_fraction)
    if not any(val.labels):
        raise ValueError("tuning needs class labels (manifest column 'label') on the held-out split")
    images = val.pixels.all()
    copies = transformed_copies(images, InvarianceTransform())
    workdir.tune.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the heartbeat is flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(
            f"sqlite:///{workdir.tune_study}", heartbeat_interval=30, grace_period=90,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=report_every),
    )

    def score(model, cfg: TrainConfig) -> dict[str, Any]:
        a = embed_images(model, images, cfg)
        b = embed_images(model, copies, cfg)
        return score_embeddings(a, b, val.labels, ks=(10,))

    def objective(trial) -> float:
        cfg = suggest_config(trial, base).replace(name=f"{base.name}-trial{trial.number}")
        trial.set_user_attr("config", cfg.to_dict())

        def on_epoch(epoch: int, model, loss: float) -> None:
            if (epoch + 1) % report_every or epoch + 1 == cfg.epochs:
                return
            p10 = score(model.eval(), cfg)["precision@10"]
            model.train()
            trial.report(p10, epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = train(workdir, cfg, None, device=device, progress=False, on_epoch=on_epoch)
        metrics = score(result.model, cfg)
        inv = metrics["invariance"]["top1"]
        trial.set_user_attr("invariance", inv)
        trial.set_constraint("invariance", min_invariance - inv)
        log.info("trial %d: precision@10 %.3f invariance %.3f", trial.number,
                 metrics["precision@10"], inv)
        return metrics["precision@10"]

    done = sum(t.state.is_finished() for t in study.trials)
    remaining = max(0, n_trials - done)
    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=timeout, show_progress_bar=progress,
                       catch=())
    write_best(workdir, study, base.name)
    return study


def write_best(workdir: WorkDir, study, name: str) -> TrainConfig | None:
    """Write the best feasible trial's config (else the most invariant one) to best_config.json."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        log.warning("no trial has completed yet: no best config written")
        return None
    feasible = [t for t in complete if _feasible(t)]
    if feasible:
        best = max(feasible, key=lambda t: t.value)
    else:
        best = max(complete, key=lambda t: t.user_attrs.get("invariance", -1))
        log.warning("no trial reached the invariance constraint; writing the most invariant one")
    cfg = TrainConfig.from_dict(best.user_attrs["config"]).replace(name=name)
    cfg.save(workdir.tune_best_config)
    info = {"trial": best.number, "precision@10": best.value, "feasible": bool(feasible),
            "invariance": best.user_attrs.get("invariance"), "study": study.study_name}
    with atomic_write(workdir.tune_best_trial) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return cfg


def summary(study) -> list[dict[str, Any]]:
    """One dict per trial: number, state, value, invariance."""
    return [{"trial": t.number, "state": t.state.name, "precision@10": t.value,
             "invariance": t.user_attrs.get("invariance", np.nan)} for t in study.trials]
