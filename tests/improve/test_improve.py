"""``improve`` without a DaCHS: the gate, idempotence, the lock and recovery after a kill.

The published path (selections written through the web page, republishing)
is tested in test_improve_service.py; here the simulated astronomer's marks
are given directly and ``publish`` is off, on a small synthetic sky and model.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pytest
import torch

from vo_similarity.improve import ImproveBusy, ImproveOptions, improve
from vo_similarity.improve.improve import _Lock, _Paths
from vo_similarity.ingest.pipeline import ingest
from vo_similarity.ingest.preprocess import PreprocessConfig
from vo_similarity.ingest.synthetic import write_sky
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.train import train
from vo_similarity.selections import Selections
from vo_similarity.selections.simulate import Astronomer, Sky
from vo_similarity.workdir import WorkDir

#: a small synthetic sky and a model that knows little of it yet (5 epochs, ~10 s)
SKY, SIZE = 300, 32
#: The gate keeps a candidate whose invariance (top-1 over the SKY images) falls by at
#: most the slack. The default slack (0.005) suits ~2000 images at ~0.99; this toy
#: model's ~0.3 over 300 images has a standard error of up to 0.5 / sqrt(300) = 0.029,
#: so at the default the outcome turned on the last bits of the base model (it was
#: refused, 0.310 -> 0.277, with the base model trained on one thread of an AMD EPYC,
#: accepted with two). Two standard errors: what chance alone can move it.
INVARIANCE_SLACK = 2 * 0.5 / SKY ** 0.5
OPTIONS = ImproveOptions(publish=False, device="cpu", epochs=20, min_queries=10, held_out=0.35,
                         selection_weight=2.0, learning_rate=2e-3,
                         invariance_slack=INVARIANCE_SLACK)
BASE = TrainConfig(name="m", width=8, image_size=SIZE, batch_size=64, epochs=5, warmup_epochs=1,
                   pool_rotations=2, precision="fp32", projection_dim=32)


def _marks(work, *, consistent: bool, n: int = 500, per_query: int = 5, seed: int = 0
           ) -> Selections:
    """What the simulated astronomer marks among 50 random images shown for each query:
    same class similar with 10 % mistakes, or (not ``consistent``) at random."""
    sky = Sky.from_workdir(work)
    who = Astronomer(seed=seed, notion="class" if consistent else "random",
                     marks_per_query=per_query)
    rng = np.random.default_rng(seed)
    ids = np.array(sky.labelled())
    q, c, s = [], [], []
    for query in rng.permutation(ids)[: n // per_query]:
        shown = rng.choice(ids[ids != query], 50, replace=False)
        for chosen, similar in who.marks(sky, int(query), shown):
            q.append(query), c.append(chosen), s.append(similar)
    now = np.datetime64(dt.datetime.now(dt.UTC).replace(tzinfo=None), "us")
    return Selections(q, c, s, ["test"] * len(q), [now] * len(q), [1] * len(q))


@pytest.fixture(scope="module")
def _sky(tmp_path_factory) -> WorkDir:
    work = WorkDir(tmp_path_factory.mktemp("improve") / "work").ensure()
    ingest(write_sky(work.synthetic, SKY, size=SIZE), work, PreprocessConfig(size=SIZE),
           progress=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the same base model whatever ran before in this process
    try:
        train(work, BASE, work.model("m"), device="cpu", progress=False)
    finally:
        torch.set_num_threads(before)
    return work


@pytest.fixture(autouse=True)
def _one_thread():
    """Fine-tuning here runs in the test's process, whose torch thread count an earlier
    in-process CLI call (``--threads``) may have changed: fix it, so the figures are the
    same in any order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def trained(_sky, tmp_path) -> WorkDir:
    """A copy of the sky and its model for one test."""
    shutil.copytree(_sky.root, tmp_path / "work", ignore=shutil.ignore_patterns("synthetic"))
    return WorkDir(tmp_path / "work")


def _weights(model_dir):
    return torch.load(model_dir.weights, weights_only=True)


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_consistent_selections_are_accepted_and_change_the_model(trained):
    before = _weights(trained.model("m"))
    # 800 marks (160 queries): the gain's interval clears 0 by a margin (500 at the
    # service's test, where the page shows neighbours rather than random images)
    result = improve(trained, "m", OPTIONS, selections=_marks(trained, consistent=True, n=800))
    assert result.decision == "accepted", result.reason
    gain = result.scores["pairwise_accuracy"]
    assert gain["ci_low"] > 0 and gain["after"] > gain["before"]
    assert not _same(before, _weights(trained.model("m")))
    assert trained.model("m").neighbour_ids.is_file()   # embedded and neighbours recomputed
    previous = _Paths(trained, "m").previous
    assert _same(before, _weights(previous))            # the old model is kept beside
    state = json.loads(_Paths(trained, "m").state.read_text())
    assert state["phase"] == "idle" and state["history"][-1]["decision"] == "accepted"


def test_contradicting_selections_are_refused_and_change_nothing(trained):
    before = _weights(trained.model("m"))
    result = improve(trained, "m", OPTIONS, selections=_marks(trained, consistent=False))
    assert result.decision == "refused"
    assert "not better" in result.reason or "invariance" in result.reason
    gain = result.scores["pairwise_accuracy"]
    assert gain["ci_low"] <= 0 <= gain["ci_high"] or result.reason.startswith("invariance")
    assert _same(before, _weights(trained.model("m")))
    assert not trained.model("m").neighbour_ids.exists()


def test_a_second_run_without_new_selections_does_nothing(trained):
    marks = _marks(trained, consistent=False)
    assert improve(trained, "m", OPTIONS, selections=marks).decision == "refused"
    again = improve(trained, "m", OPTIONS, selections=marks)
    assert again.decision == "nothing new" and "refused" in again.reason


def test_too_few_selections_decide_nothing(trained):
    marks = _marks(trained, consistent=True)
    few = marks.subset(np.isin(marks.query_id, marks.query_id[:25]))  # 5 query images
    result = improve(trained, "m", OPTIONS, selections=few)
    assert result.decision == "too few" and "record more" in result.reason


def test_selections_older_than_the_model_are_not_new(trained):
    marks = _marks(trained, consistent=True)
    old = Selections(marks.query_id, marks.chosen_id, marks.is_similar, marks.session_id,
                     np.full(len(marks), np.datetime64("2020-01-01T00:00:00", "us")),
                     marks.model_id)
    assert improve(trained, "m", OPTIONS, selections=old).decision == "nothing new"


def test_a_second_run_is_refused_while_one_holds_the_lock(trained):
    with _Lock(_Paths(trained, "m").lock), pytest.raises(ImproveBusy, match="running"):
        improve(trained, "m", OPTIONS, selections=_marks(trained, consistent=True))


def test_a_run_killed_while_moving_the_candidate_in_is_undone(trained):
    """The moment between the two renames: models/m gone, the old one in improve/m/previous."""
    paths = _Paths(trained, "m")
    before = _weights(paths.model)
    paths.previous.root.parent.mkdir(parents=True)
    shutil.copytree(paths.model.root, paths.candidate.root)
    paths.model.root.rename(paths.previous.root)
    paths.state.write_text(json.dumps({"since": "2000-01-01T00:00:00", "considered_up_to": None,
                                       "phase": "swapping", "history": []}))
    result = improve(trained, "m", OPTIONS, selections=Selections.empty())
    assert result.decision == "nothing new"
    assert _same(before, _weights(paths.model))
    assert json.loads(paths.state.read_text())["phase"] == "idle"


def test_a_run_killed_before_republishing_is_finished(trained):
    """After both renames: the next run republishes (here publish is off) and counts the
    selections the model was made from as old."""
    paths = _Paths(trained, "m")
    paths.base.mkdir(parents=True, exist_ok=True)
    paths.state.write_text(json.dumps({"since": "2000-01-01T00:00:00",
                                       "considered_up_to": "2030-01-01T00:00:00",
                                       "phase": "publishing", "history": []}))
    assert improve(trained, "m", OPTIONS, selections=_marks(trained, consistent=True)
                   ).decision == "nothing new"  # marks of today are older than 2030
    state = json.loads(paths.state.read_text())
    assert state["phase"] == "idle" and state["since"] == "2030-01-01T00:00:00"
