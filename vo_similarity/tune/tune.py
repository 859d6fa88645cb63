"""Hyperparameter search with Optuna (Akiba et al. 2019, arXiv:1907.10902).

Objective (``objective="precision"``): macro precision@10 on the held-out split
of the images; constraint: the held-out invariance must reach
``min_invariance`` (TPE's constrained mode through ``Trial.set_constraint``).

Objective ``"selections"``: the pairwise accuracy of the embedding on held-out
recorded selections (:meth:`Selections.split`: a query's marks all on one
side; :func:`vo_similarity.selections.selection_scores`); every trial trains
with the other side's selections, and the selection term's weight and
temperature join the search space. The invariance constraint is then measured
on the images of the held-out selections, so neither labels nor a held-out
image split are needed.

Unpromising trials are pruned on their intermediate objective by the median
rule. The study lives in ``WORK/tune/study.sqlite``, so a killed search
resumes: finished trials are kept, and a trial whose process died is retried
(heartbeat + ``RetryHeartbeatStaleTrialCallback``). A study keeps the
objective it was started with.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from vo_similarity.selections import Selections

__all__ = ["OBJECTIVES", "suggest_config", "tune"]

log = logging.getLogger(__name__)

#: objective -> the name of its value in reports
OBJECTIVES = {"precision": "precision@10", "selections": "selection_accuracy",
              "category": "category_precision@10"}


def suggest_config(trial, base: TrainConfig, *, selections: bool = False,
                   fine_tune: bool = False) -> TrainConfig:
    """The search space: optimisation and augmentation ranges (rotation stays full-circle),
    and, when ``base`` uses the canonical frame, its fill and the share of size it normalises;
    with ``selections``, the weight and temperature of the selection term too. With
    ``fine_tune`` (trials start from trained weights) the network's shape, and so the
    projection size, stays the base's."""
    canonical = {}
    if base.canonical.enabled:
        canonical = {"fill": trial.suggest_float("canonical_fill", 0.25, 0.5),
                     "zoom_power": trial.suggest_float("canonical_zoom_power", 0.4, 1.0)}
    extra = {}
    if selections:
        extra = {"selection_weight": trial.suggest_float("selection_weight", 0.1, 10.0, log=True),
                 "selection_temperature": trial.suggest_float("selection_temperature", 0.05, 0.5,
                                                              log=True)}
    return base.replace(
        **extra,
        canonical=canonical,
        learning_rate=trial.suggest_float("learning_rate", 3e-4, 5e-3, log=True),
        temperature=trial.suggest_float("temperature", 0.05, 0.5, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        projection_dim=(base.projection_dim if fine_tune else
                        trial.suggest_categorical("projection_dim", [64, 128, 256])),
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
    objective: str = "precision",
    selections: Selections | None = None,
    held_out: float = 0.3,
    init_weights: str | os.PathLike[str] | None = None,
):
    """Run (or resume) the search until ``n_trials`` trials have finished; write the best config.

    Args:
        workdir: the work directory; for ``objective="precision"`` its manifest must have
            labels on the held-out split.
        base: fixed settings (architecture, epochs per trial, val_fraction, category...).
        n_trials: total finished trials wanted, counting those of earlier runs.
        min_invariance: the held-out invariance a trial must reach to be feasible.
        report_every: epochs between intermediate reports for pruning.
        objective: ``"precision"`` (held-out macro precision@10 against the labels),
            ``"category"`` (macro precision@10 against the manifest's ``category`` on its
            tuning half; every image trains, no label is used in training) or
            ``"selections"`` (pairwise accuracy on held-out ``selections``).
        selections: the recorded selections (objective ``"selections"``).
        held_out: the share of the selections' queries held out for the objective.
        init_weights: every trial starts from these weights (fine-tuning a model).

    Returns:
        The :class:`optuna.Study`.

    Raises:
        ValueError: no held-out split or labels (precision), no selections or none
            scorable on held-out queries (selections), or a study of another objective.
    """
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, not {objective!r}")
    if objective == "precision":
        score, train_selections = _precision_objective(workdir, base)
    elif objective == "category":
        score, train_selections = _category_objective(workdir, base)
    else:
        score, train_selections = _selection_objective(workdir, base, selections, held_out)
    value_name = OBJECTIVES[objective]
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
    # a study from before objectives could be chosen tuned precision@10
    known = study.user_attrs.get("objective", "precision" if study.trials else None)
    if known is None:
        study.set_user_attr("objective", objective)
    elif known != objective:
        raise ValueError(f"the study {study_name!r} in {workdir.tune_study} tunes {known!r}, not "
                         f"{objective!r}: give another --study")

    def run_trial(trial) -> float:
        cfg = suggest_config(trial, base, selections=objective == "selections",
                             fine_tune=init_weights is not None)
        cfg = cfg.replace(name=f"{base.name}-trial{trial.number}")
        trial.set_user_attr("config", cfg.to_dict())

        def on_epoch(epoch: int, model, loss: float) -> None:
            if (epoch + 1) % report_every or epoch + 1 == cfg.epochs:
                return
            value = score(model.eval(), cfg)[value_name]
            model.train()
            trial.report(value, epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = train(workdir, cfg, None, device=device, progress=False, on_epoch=on_epoch,
                       selections=train_selections, init_weights=init_weights)
        metrics = score(result.model, cfg)
        inv = metrics["invariance"]["top1"]
        trial.set_user_attr("invariance", inv)
        for key, value in metrics.items():
            if key not in ("invariance", value_name) and isinstance(value, (int, float)):
                trial.set_user_attr(key, value)
        trial.set_constraint("invariance", min_invariance - inv)
        log.info("trial %d: %s %.3f invariance %.3f", trial.number, value_name,
                 metrics[value_name], inv)
        return metrics[value_name]

    done = sum(t.state.is_finished() for t in study.trials)
    remaining = max(0, n_trials - done)
    if remaining:
        study.optimize(run_trial, n_trials=remaining, timeout=timeout, show_progress_bar=progress,
                       catch=())
    write_best(workdir, study, base.name)
    return study


Score = Callable[[Any, TrainConfig], dict[str, Any]]


def _precision_objective(workdir: WorkDir, base: TrainConfig) -> tuple[Score, None]:
    """Held-out macro precision@10 and invariance on the held-out images."""
    if base.val_fraction <= 0:
        raise ValueError("tuning needs a held-out split: set val_fraction > 0")
    val = load_images(workdir, category=base.category, split="val", val_fraction=base.val_fraction)
    if not any(val.labels):
        raise ValueError("tuning needs class labels (manifest column 'label') on the held-out split")
    images = val.pixels.all()
    copies = transformed_copies(images, InvarianceTransform())

    def score(model, cfg: TrainConfig) -> dict[str, Any]:
        a = embed_images(model, images, cfg)
        b = embed_images(model, copies, cfg)
        return score_embeddings(a, b, val.labels, ks=(10,))

    return score, None


def _category_objective(workdir: WorkDir, base: TrainConfig, max_images: int = 5000
                        ) -> tuple[Score, None]:
    """Macro precision@10 against the manifest's categories on their *tuning* half
    (:func:`~vo_similarity.evaluate.metrics.category_precision`); the held-out half is
    left for ``evaluate`` to report. Invariance on (up to ``max_images`` of) the images."""
    from vo_similarity.evaluate.metrics import category_classes, category_precision

    data = load_images(workdir, category=base.category)
    if data.categories is None or not category_classes(data.categories):
        raise ValueError("the category objective needs a manifest column 'category' with "
                         "classes of at least 20 images")
    images = data.pixels.all()
    rows = np.random.default_rng(base.seed).permutation(len(data))[:max_images]
    copies = transformed_copies(images[rows], InvarianceTransform())

    def score(model, cfg: TrainConfig) -> dict[str, Any]:
        a = embed_images(model, images, cfg)
        b = embed_images(model, copies, cfg)
        scores = score_embeddings(a[rows], b, np.full(len(rows), "", dtype=object), ks=(10,))
        halves = category_precision(a, data.categories, data.image_ids, n_boot=200)
        scores["category_precision@10"] = halves["tuning"]["macro"]
        scores["category_precision@10_held_out"] = halves["held_out"]["macro"]
        return scores

    return score, None


def _selection_objective(workdir: WorkDir, base: TrainConfig, selections: Selections | None,
                         held_out: float) -> tuple[Score, Selections]:
    """Pairwise accuracy on the held-out queries' selections, invariance on their images;
    the other queries' selections train."""
    from vo_similarity.selections import selection_scores

    if selections is None or not len(selections):
        raise ValueError("the selections objective needs recorded selections (--selections)")
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must be in (0, 1), not {held_out}")
    everything = load_images(workdir, category=base.category)
    training, held = selections.split(held_out)
    held = held.restrict(everything.image_ids)
    ids = np.unique(np.concatenate([held.query_id, held.chosen_id]))
    rows = np.flatnonzero(np.isin(everything.image_ids, ids))
    pixels = everything.pixels.subset(rows)
    image_ids = everything.image_ids[rows].astype(np.int64)
    per_query = {}
    for q, s in zip(held.query_id, held.is_similar):
        per_query.setdefault(int(q), set()).add(bool(s))
    scorable = sum(len(kinds) == 2 for kinds in per_query.values())
    if not scorable:
        raise ValueError(f"none of the {len(held)} held-out selections' queries (held_out "
                         f"{held_out}) has both similar and not-similar marks among the images "
                         "of the work directory: nothing to score")
    if not len(training):
        raise ValueError("no selection is left to train with: lower held_out")
    log.info("selections objective: %d marks train, %d held-out marks of %d scorable queries "
             "on %d images", len(training), len(held), scorable, len(image_ids))
    images = pixels.all()
    copies = transformed_copies(images, InvarianceTransform())
    blank = np.full(len(image_ids), "", dtype=object)

    def score(model, cfg: TrainConfig) -> dict[str, Any]:
        a = embed_images(model, images, cfg)
        b = embed_images(model, copies, cfg)
        scores = score_embeddings(a, b, blank, ks=(10,))
        sel = selection_scores(a, image_ids, held, n_boot=200, seed=base.seed)
        scores["selection_accuracy"] = sel["pairwise_accuracy"]["value"]
        scores["selection_accuracy_ci_low"] = sel["pairwise_accuracy"]["ci_low"]
        scores["selection_accuracy_ci_high"] = sel["pairwise_accuracy"]["ci_high"]
        return scores

    return score, training


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
    objective = study.user_attrs.get("objective", "precision")
    info = {"trial": best.number, OBJECTIVES[objective]: best.value, "objective": objective,
            "feasible": bool(feasible), "invariance": best.user_attrs.get("invariance"),
            "study": study.study_name}
    for key in ("selection_accuracy_ci_low", "selection_accuracy_ci_high"):
        if key in best.user_attrs:
            info[key] = best.user_attrs[key]
    with atomic_write(workdir.tune_best_trial) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return cfg


def summary(study) -> list[dict[str, Any]]:
    """One dict per trial: number, state, the objective's value (under ``value`` and under
    its name, e.g. ``precision@10``), invariance."""
    name = OBJECTIVES[study.user_attrs.get("objective", "precision")]
    return [{"trial": t.number, "state": t.state.name, "value": t.value, name: t.value,
             "invariance": t.user_attrs.get("invariance", np.nan)} for t in study.trials]
