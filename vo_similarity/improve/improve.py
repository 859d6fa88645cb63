"""Continuous improvement: fine-tune a model on recorded selections, publish it only if it is better.

One run of :func:`improve` (``vo-similarity improve WORK --model M``):

1. takes the lock ``WORK/improve/M.lock`` (a second run refuses at once) and
   repairs what a killed run left (:func:`_recover`);
2. reads the selections recorded since model M was made, keeps those between
   images of the work directory and splits them by query image into a
   training part and a held-out part (:meth:`Selections.split`);
3. stops here when nothing was recorded since the last run considered (an
   idempotent cron job);
4. fine-tunes a *candidate* from M's weights with SimCLR plus the selections'
   supervised contrastive term, in ``WORK/improve/M/candidate``;
5. scores M and the candidate on the held-out selections (pairwise ranking
   accuracy, paired bootstrap over query images) and on the invariance test;
6. accepts the candidate only when the 95 % interval of its gain lies above
   ``margin`` and its invariance holds; otherwise it reports why and stops;
7. embeds every image, recomputes the neighbours, moves the candidate in as
   ``models/M`` (the old model stays as ``WORK/improve/M/previous``) and
   republishes M, whose swap into DaCHS is atomic.

The published model changes only in step 7's last transaction, so a run
killed at any point leaves the service as it was; the state file
``WORK/improve/M.json`` records the phase, and the next run finishes or undoes
what the killed one left.  Every run appends to ``WORK/improve/M.log``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np

from vo_similarity.workdir import ModelDir, WorkDir, atomic_write

__all__ = ["ImproveBusy", "ImproveOptions", "ImproveResult", "improve"]

log = logging.getLogger(__name__)


class ImproveBusy(RuntimeError):
    """Another ``improve`` of the same model holds the lock."""


@dataclass(frozen=True)
class ImproveOptions:
    """What a run fine-tunes with and what it requires of the candidate.

    Attributes:
        source: where the selections are read (:func:`~vo_similarity.selections.read_selections`):
            ``"service"`` (the DaCHS site's table), a TAP URL or a file.
        held_out: share of query images whose selections are kept for the test.
        margin: the lower end of the 95 % interval of the gain in held-out pairwise
            accuracy must exceed this.
        min_invariance: the candidate's invariance (top-1) must reach this; None:
            the current model's invariance minus ``invariance_slack``.
        invariance_slack: see ``min_invariance``.
        min_queries: fewest held-out query images with both kinds of marks to decide on.
        epochs, learning_rate, selection_weight: the fine-tuning (no warm-up);
            ``learning_rate`` None: a quarter of the model's own.
        publish: republish an accepted candidate (False: leave it in the work directory).
        device: torch device for training and embedding.
    """

    source: str = "service"
    held_out: float = 0.3
    margin: float = 0.0
    min_invariance: float | None = None
    invariance_slack: float = 0.005
    min_queries: int = 10
    epochs: int = 20
    learning_rate: float | None = None
    selection_weight: float = 1.0
    publish: bool = True
    device: str = "auto"
    max_invariance_images: int = 2000
    seed: int = 0


@dataclass
class ImproveResult:
    """What one run decided, as written to the state file."""

    model: str
    decision: str  # "nothing new", "too few", "refused", "accepted", "published"
    reason: str
    selections: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model": self.model, "decision": self.decision, "reason": self.reason,
                "selections": self.selections, "scores": self.scores}


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


class _Paths:
    def __init__(self, work: WorkDir, name: str):
        self.model = work.model(name)
        self.base = work.root / "improve"
        self.state = self.base / f"{name}.json"
        self.lock = self.base / f"{name}.lock"
        self.log = self.base / f"{name}.log"
        self.candidate = ModelDir(self.base / name / "candidate")
        self.previous = ModelDir(self.base / name / "previous")


def _read_state(paths: _Paths) -> dict:
    if paths.state.is_file():
        return json.loads(paths.state.read_text())
    made = dt.datetime.fromtimestamp(paths.model.weights.stat().st_mtime, dt.UTC)
    return {"since": made.replace(tzinfo=None).isoformat(timespec="microseconds"),
            "considered_up_to": None, "phase": "idle", "history": []}


def _write_state(paths: _Paths, state: dict) -> None:
    with atomic_write(paths.state) as tmp:
        tmp.write_text(json.dumps(state, indent=1) + "\n")


class _Lock:
    """An exclusive ``flock`` on the lock file, released when the process ends, however it ends."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.fd, 64).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise ImproveBusy(f"another `vo-similarity improve` of this model is running "
                              f"(pid {holder}; lock {self.path})") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc) -> None:
        os.ftruncate(self.fd, 0)
        os.close(self.fd)


def _recover(paths: _Paths, state: dict, work: WorkDir, options: ImproveOptions, site) -> None:
    """Finish or undo what a killed run left behind, by the phase it recorded."""
    phase = state.get("phase", "idle")
    if phase == "swapping":
        if not paths.model.root.exists() and paths.previous.root.exists():
            paths.previous.root.rename(paths.model.root)  # undo: the old model back in place
            log.warning("a run was killed while moving the candidate in: restored the old model")
        elif paths.model.root.exists() and paths.candidate.root.exists():
            log.warning("a run was killed before moving the candidate in: the model is unchanged")
        else:  # the move was complete: what is left is to publish it
            phase = "publishing"
        state["phase"] = phase if phase == "publishing" else "idle"
    if state["phase"] == "publishing":
        log.warning("a run was killed before republishing the accepted model: publishing it now")
        _publish(work, paths.model.name, options, site)
        state["phase"] = "idle"
        if state.get("considered_up_to"):  # the model in place was made from those
            state.update(since=state["considered_up_to"], considered_up_to=None)
    elif phase not in ("idle", "swapping"):
        state["phase"] = "idle"  # killed while training or scoring: nothing was changed
    _write_state(paths, state)


def _publish(work: WorkDir, name: str, options: ImproveOptions, site) -> None:
    if not options.publish:
        return
    from vo_similarity.publish.publisher import publish

    publish(work, site, models=[name], progress=False, refresh_metadata=False)


def _invariance(model, cfg, images, copies) -> float:
    from vo_similarity.embed.embed import embed_images
    from vo_similarity.evaluate.metrics import invariance

    return invariance(embed_images(model, images, cfg), embed_images(model, copies, cfg))["top1"]


def _candidate_config(cfg, options: ImproveOptions):
    # no warm-up: the weights are trained already; a quarter of the model's rate gained more
    # and kept more invariance than its full rate (benchmarks/RESULTS.md, issue 13)
    return cfg.replace(
        epochs=options.epochs, warmup_epochs=0,
        learning_rate=options.learning_rate or cfg.learning_rate / 4,
        selection_weight=options.selection_weight, seed=cfg.seed + 1)


def _decide(paths: _Paths, work: WorkDir, options: ImproveOptions, sel) -> ImproveResult:
    """Fine-tune, score and gate; the candidate is complete (embedded, neighbours) when accepted."""
    from vo_similarity.embed.embed import embed_images, embed_workdir, load_trained
    from vo_similarity.evaluate.evaluate import InvarianceTransform, transformed_copies
    from vo_similarity.learn.data import load_images
    from vo_similarity.learn.train import train
    from vo_similarity.neighbours.store import compute_model_neighbours
    from vo_similarity.selections.metrics import paired_improvement

    name = paths.model.name
    cfg, current = load_trained(paths.model, options.device if options.device != "auto" else "cpu")
    data = load_images(work, category=cfg.category)
    sel = sel.restrict(data.image_ids)
    training, held = sel.split(options.held_out)
    counts = {"new": len(sel), "training": len(training), "held_out": len(held),
              "held_out_queries": len(np.unique(held.query_id))}
    result = ImproveResult(name, "too few", "", selections=counts)
    if counts["held_out_queries"] < options.min_queries or len(training) == 0:
        result.reason = (f"{counts['held_out_queries']} held-out query images and "
                         f"{len(training)} training marks: need at least {options.min_queries} "
                         f"and 1 (record more selections)")
        return result

    if paths.candidate.root.exists():
        shutil.rmtree(paths.candidate.root)
    log.info("fine-tuning %s on %d marks (%d held out)", name, len(training), len(held))
    ccfg = _candidate_config(cfg, options).replace(name=name)
    fit = train(work, ccfg, paths.candidate, device=options.device, progress=False,
                selections=training, init_weights=paths.model.weights, restart=True)
    candidate = fit.model.eval()

    device = "cpu" if options.device == "auto" else options.device
    before = embed_images(current, data.pixels, cfg)
    # written beside the candidate: what it publishes if accepted (same images, same order)
    after, _ = embed_workdir(work, paths.candidate, device=device, progress=False)
    gain = paired_improvement(before, after, data.image_ids, held, seed=options.seed)

    n_inv = min(len(data), options.max_invariance_images)
    rows = np.sort(np.random.default_rng(options.seed).choice(len(data), n_inv, replace=False))
    originals = data.pixels[rows]
    copies = transformed_copies(originals, InvarianceTransform())
    inv_before = _invariance(current, cfg, originals, copies)
    inv_after = _invariance(candidate, ccfg, originals, copies)
    floor = (options.min_invariance if options.min_invariance is not None
             else inv_before - options.invariance_slack)
    result.scores = {"pairwise_accuracy": gain, "invariance": {"before": inv_before,
                     "after": inv_after, "required": floor}, "margin": options.margin}
    log.info("held-out pairwise accuracy %.3f -> %.3f (gain %.3f, 95%% CI %.3f..%.3f); "
             "invariance %.3f -> %.3f", gain["before"], gain["after"], gain["value"],
             gain["ci_low"], gain["ci_high"], inv_before, inv_after)

    if gain["ci_low"] <= options.margin:
        result.decision = "refused"
        result.reason = (f"not better: the gain in held-out pairwise accuracy is {gain['value']:+.3f}"
                         f" (95% CI {gain['ci_low']:+.3f}..{gain['ci_high']:+.3f}), whose lower "
                         f"end does not exceed the margin {options.margin:+.3f}")
        return result
    if inv_after < floor:
        result.decision = "refused"
        result.reason = f"invariance fell to {inv_after:.3f}, below the required {floor:.3f}"
        return result
    k = np.load(paths.model.neighbour_ids, mmap_mode="r").shape[1] \
        if paths.model.neighbour_ids.is_file() else 1000
    compute_model_neighbours(paths.candidate, k, progress=False)
    result.decision = "accepted"
    result.reason = (f"better: held-out pairwise accuracy {gain['before']:.3f} -> {gain['after']:.3f}"
                     f" (gain 95% CI {gain['ci_low']:+.3f}..{gain['ci_high']:+.3f}), invariance "
                     f"{inv_before:.3f} -> {inv_after:.3f}")
    return result


def _move_in(paths: _Paths, state: dict) -> None:
    """Replace ``models/M`` by the candidate; the old model becomes ``previous``."""
    state["phase"] = "swapping"
    _write_state(paths, state)
    if paths.previous.root.exists():
        shutil.rmtree(paths.previous.root)
    paths.model.root.rename(paths.previous.root)
    paths.candidate.root.rename(paths.model.root)
    state["phase"] = "publishing"
    _write_state(paths, state)


def improve(work: WorkDir, model: str, options: ImproveOptions = ImproveOptions(), *,
            site=None, selections=None) -> ImproveResult:
    """One improvement run of ``model`` (see the module docstring).

    Args:
        work: the work directory; ``model`` must be trained and embedded.
        site: the DaCHS site read and published to (default: ``DachsSite.from_config()``).
        selections: a :class:`~vo_similarity.selections.Selections` to use instead
            of reading ``options.source``.

    Raises:
        ImproveBusy: another run of the same model holds the lock.
        FileNotFoundError: the model does not exist.
    """
    from vo_similarity.publish.collections import collection_of
    from vo_similarity.selections.source import read_selections

    paths = _Paths(work, model)
    with _Lock(paths.lock):
        handler = logging.FileHandler(paths.log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("vo_similarity").addHandler(handler)
        try:
            if not paths.model.weights.is_file() and not paths.previous.root.exists():
                raise FileNotFoundError(f"no trained model {model!r} in {work.root} "
                                        f"({paths.model.weights} is missing)")
            state = _read_state(paths)
            _recover(paths, state, work, options, site)
            sel = (selections if selections is not None
                   else read_selections(options.source, site=site,
                                        collection=collection_of(work)))
            sel = sel.since(np.datetime64(state["since"]))
            latest = sel.latest()
            seen = state.get("considered_up_to")
            if latest is None or (seen is not None and latest <= np.datetime64(seen)):
                last = state["history"][-1]["decision"] if state["history"] else "none"
                result = ImproveResult(model, "nothing new", f"no selection recorded since "
                                       f"{seen or state['since']} (last decision: {last})",
                                       selections={"new": len(sel)})
                log.info("%s: %s", model, result.reason)
                return result
            state["phase"] = "training"  # until the decision: nothing outside improve/ changes
            _write_state(paths, state)
            result = _decide(paths, work, options, sel)
            log.info("%s: %s: %s", model, result.decision, result.reason)
            entry = {"at": _now(), **result.to_dict()}
            state["considered_up_to"] = str(latest)
            if result.decision == "accepted":
                _move_in(paths, state)
                _publish(work, model, options, site)
                # the new model is made from what was recorded up to `latest`
                state.update(phase="idle", since=str(latest), considered_up_to=None)
                if options.publish:
                    result.decision = entry["decision"] = "published"
            state["phase"] = "idle"
            state["history"].append(entry)
            _write_state(paths, state)
            return result
        finally:
            logging.getLogger("vo_similarity").removeHandler(handler)
            handler.close()
