"""The selection scores against hand computations and a loop-by-loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vo_similarity.selections import (
    Selections,
    paired_improvement,
    per_query_scores,
    selection_scores,
)


def make(marks: list[tuple[int, int, bool]]) -> Selections:
    q, c, s = zip(*marks) if marks else ((), (), ())
    n = len(q)
    return Selections(q, c, s, [""] * n, [None] * n, [1] * n)


# Four images in the plane. Cosines with 10: 11 -> 0.8, 12 -> 0, 13 -> -1;
# with 11: 10 -> 0.8, 12 -> 0.6, 13 -> -0.8; with 12: 10 -> 0, 11 -> 0.6, 13 -> 0.
IDS = np.array([10, 11, 12, 13])
PLANE = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], dtype=np.float32)
MARKS = make([
    (10, 11, True), (10, 13, True), (10, 12, False),  # pairs: 0.8 > 0 yes, -1 > 0 no: 1/2
    (11, 12, True), (11, 13, False),                  # 0.6 > -0.8: 1
    (12, 13, True),                                   # similar only: recall, no pair
    (13, 10, True), (13, 10, False),                  # the same image both ways: a tie, 1/2
    (10, 99, True), (99, 10, False), (11, 11, True),  # unknown image, the query itself
])


def test_the_plane_by_hand():
    got = selection_scores(PLANE, IDS, MARKS, k=1, n_boot=200)
    assert (got["n_marks"], got["dropped"], got["n_pairs"]) == (8, 3, 2 + 1 + 1)
    assert got["n_queries"] == 3
    assert got["per_query_accuracy"] == {10: 0.5, 11: 1.0, 13: 0.5}
    assert got["pairwise_accuracy"]["value"] == pytest.approx(2 / 3)
    # recall@1: 10's nearest is 11 (1 of its 2 similar), 11's is 10 (not 12),
    # 12's nearest is 11 (not 13), 13's is 12 (cos 0 beats 10's -1)
    assert got["recall@k"]["value"] == pytest.approx((0.5 + 0 + 0 + 0) / 4)
    assert got["recall@k"]["n_queries"] == 4
    # 12's two next after 11 tie at cosine 0 (10 and 13): the lower row, 10, comes first
    per = per_query_scores(PLANE, IDS, MARKS, k=2)
    assert dict(zip(per["query_id"].tolist(), per["recall"].tolist())) == \
        {10: 0.5, 11: 1.0, 12: 0.0, 13: 0.0}
    per = per_query_scores(PLANE, IDS, MARKS, k=3)
    assert per["recall"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert math.isnan(per["accuracy"][2])  # 12 has no pair


def test_the_row_order_of_the_vectors_does_not_matter_but_for_ties():
    order = np.array([2, 0, 3, 1])
    a = selection_scores(PLANE, IDS, MARKS, k=1, n_boot=50)
    b = selection_scores(PLANE[order], IDS[order], MARKS, k=1, n_boot=50)
    assert a["per_query_accuracy"] == b["per_query_accuracy"]
    assert a["recall@k"]["value"] == b["recall@k"]["value"]


def _reference(vectors, ids, marks, k):
    """The definitions, one loop at a time: exact arithmetic on integer vectors,
    correctly rounded sums (math.fsum) of float64 products otherwise."""
    row = {int(i): r for r, i in enumerate(ids)}
    exact = np.asarray(vectors).dtype.kind in "iu" or np.all(np.asarray(vectors) % 1 == 0)

    def dot(a: int, b: int):
        if exact:
            return sum(int(x) * int(y) for x, y in zip(vectors[a], vectors[b]))
        return math.fsum(float(x) * float(y) for x, y in zip(vectors[a], vectors[b]))

    by_query, dropped = {}, 0
    for q, c, s in zip(marks.query_id.tolist(), marks.chosen_id.tolist(),
                       marks.is_similar.tolist()):
        if q not in row or c not in row or q == c:
            dropped += 1
            continue
        by_query.setdefault(q, []).append((c, s))
    accuracy, recall, pairs = {}, {}, 0
    for q, ms in by_query.items():
        yes = [dot(row[q], row[c]) for c, s in ms if s]
        no = [dot(row[q], row[c]) for c, s in ms if not s]
        if yes and no:
            wins = 0.0
            for a in yes:
                for b in no:
                    wins += 1.0 if a > b else 0.5 if a == b else 0.0
            accuracy[q] = wins / (len(yes) * len(no))
            pairs += len(yes) * len(no)
        similar = {c for c, s in ms if s}
        if similar:
            others = [r for r in range(len(ids)) if r != row[q]]
            others.sort(key=lambda r: -dot(row[q], r))  # stable: ties by lower row
            top = set(others[:k])
            recall[q] = sum(row[c] in top for c in similar) / len(similar)
    return accuracy, recall, pairs, dropped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_the_reference_on_many_ties(seed):
    """Small integer vectors: every product is exact in float32, and ties abound."""
    rng = np.random.default_rng(seed)
    n = 60
    vectors = rng.integers(-2, 3, (n, 3)).astype(np.float32)
    ids = rng.permutation(1000)[:n] + 5
    marks = make([(int(ids[rng.integers(n)]) if rng.random() > 0.03 else 99999,
                   int(ids[rng.integers(n)]), bool(rng.random() < 0.5)) for _ in range(400)])
    k = int(rng.integers(1, 15))
    got = selection_scores(vectors, ids, marks, k=k, n_boot=100, seed=seed)
    accuracy, recall, pairs, dropped = _reference(vectors, ids, marks, k)
    assert got["per_query_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert got["dropped"] == dropped > 0 and got["n_marks"] == len(marks) - dropped
    assert got["n_pairs"] == pairs and got["n_queries"] == len(accuracy)
    assert got["pairwise_accuracy"]["value"] == pytest.approx(np.mean(list(accuracy.values())))
    assert got["recall@k"]["value"] == pytest.approx(np.mean(list(recall.values())))
    assert got["recall@k"]["n_queries"] == len(recall)


def test_agrees_with_the_reference_on_unit_vectors():
    """Random unit vectors in float32 against the exact cosines of the same float32
    numbers. A float32 dot product of unit rows errs by at most about D * 2^-24
    (Higham 2002, eq. 3.5), so where no two cosines of a row lie within twice
    that, every comparison comes out as in exact arithmetic, on any CPU."""
    rng = np.random.default_rng(7)
    n, d = 40, 16
    v = rng.normal(size=(n, d))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(n) * 3
    marks = make([(int(ids[rng.integers(n)]), int(ids[rng.integers(n)]), bool(rng.random() < .4))
                  for _ in range(300)])
    cos = v.astype(np.float64) @ v.T.astype(np.float64)
    off = ~np.eye(n, dtype=bool)
    gaps = np.abs(cos[:, :, None] - cos[:, None, :])[off[:, :, None] & off[:, None, :]
                                                     & ~np.eye(n, dtype=bool)[None]]
    assert gaps.min() > 2 * d * 2.0**-24  # so no comparison is near a rounding flip
    got = selection_scores(v, ids, marks, k=5, n_boot=50)
    accuracy, recall, _, _ = _reference(v, ids, marks, 5)
    assert got["per_query_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert got["recall@k"]["value"] == pytest.approx(np.mean(list(recall.values())))


def _triplets(outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray, Selections]:
    """Query i (id 3i) with one similar (3i+1) and one not similar (3i+2) image,
    ordered right (accuracy 1) where ``outcomes`` is true, wrong (0) elsewhere."""
    near, far = np.array([0.6, 0.8]), np.array([0.0, 1.0])
    rows = []
    for right in outcomes:
        rows += [[1.0, 0.0], near if right else far, far if right else near]
    ids = np.arange(3 * len(outcomes))
    marks = make([(3 * i, 3 * i + s, s == 1) for i in range(len(outcomes)) for s in (1, 2)])
    return np.array(rows, dtype=np.float32), ids, marks


def test_the_interval_is_a_bootstrap_over_queries():
    """Per-query accuracies of 0 and 1: the interval of their mean has the binomial
    width 2 * 1.96 * sqrt(p (1 - p) / Q), within the bootstrap's own scatter."""
    rng = np.random.default_rng(11)
    outcomes = rng.random(400) < 0.7
    vectors, ids, marks = _triplets(outcomes)
    got = selection_scores(vectors, ids, marks, n_boot=2000, seed=3)["pairwise_accuracy"]
    p = outcomes.mean()
    assert got["value"] == pytest.approx(p) and got["n_queries"] == 400
    width = 2 * 1.96 * math.sqrt(p * (1 - p) / 400)
    assert got["ci_low"] < p < got["ci_high"]
    assert got["ci_high"] - got["ci_low"] == pytest.approx(width, rel=0.15)
    assert abs((got["ci_low"] + got["ci_high"]) / 2 - p) < 0.1 * width
    # the same seed gives the same interval; marks of one query are one unit
    again = selection_scores(vectors, ids, marks, n_boot=2000, seed=3)["pairwise_accuracy"]
    assert again == got
    all_right = selection_scores(*_triplets(np.ones(30, bool)))["pairwise_accuracy"]
    assert (all_right["value"], all_right["ci_low"], all_right["ci_high"]) == (1.0, 1.0, 1.0)


def test_no_usable_query_gives_nan():
    got = selection_scores(PLANE, IDS, make([(10, 99, True), (12, 12, False)]))
    assert got["n_marks"] == 0 and got["dropped"] == 2 and got["n_queries"] == 0
    assert math.isnan(got["pairwise_accuracy"]["value"])
    assert math.isnan(got["recall@k"]["ci_low"])
    assert got["per_query_accuracy"] == {}
    assert selection_scores(PLANE, IDS, Selections.empty())["n_marks"] == 0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="do not match"):
        selection_scores(PLANE, IDS[:3], MARKS)
    with pytest.raises(ValueError, match="twice"):
        selection_scores(PLANE, np.array([1, 2, 2, 3]), MARKS)
    with pytest.raises(ValueError, match="k must be"):
        selection_scores(PLANE, IDS, MARKS, k=0)


def test_paired_improvement_by_hand():
    rng = np.random.default_rng(5)
    before_outcomes = rng.random(200) < 0.5
    # after: right on every query before got right, and on 40 % of the others
    after_outcomes = before_outcomes | (rng.random(200) < 0.4)
    before, ids, marks = _triplets(before_outcomes)
    after, ids2, marks2 = _triplets(after_outcomes)
    # the same images and marks; only the vectors differ
    assert np.array_equal(ids, ids2) and np.array_equal(marks.chosen_id, marks2.chosen_id)
    got = paired_improvement(before, after, ids, marks, n_boot=2000)
    diff = after_outcomes.astype(float) - before_outcomes
    assert got["n_queries"] == 200
    assert got["before"] == pytest.approx(before_outcomes.mean())
    assert got["after"] == pytest.approx(after_outcomes.mean())
    assert got["value"] == pytest.approx(diff.mean())
    assert 0 < got["ci_low"] < got["value"] < got["ci_high"]
    # pairing: the interval is that of the per-query differences (width ~ 2 * 1.96 * sd/sqrt(Q)),
    # narrower than that of two independent means
    width = 2 * 1.96 * diff.std() / math.sqrt(200)
    assert got["ci_high"] - got["ci_low"] == pytest.approx(width, rel=0.15)
    unpaired = 2 * 1.96 * math.sqrt((before_outcomes.var() + after_outcomes.var()) / 200)
    assert got["ci_high"] - got["ci_low"] < unpaired
    same = paired_improvement(before, before, ids, marks)
    assert (same["value"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)


def test_paired_improvement_of_vectors_of_another_dimension():
    wider = np.hstack([PLANE, np.zeros((4, 3), np.float32)])
    got = paired_improvement(PLANE, wider, IDS, MARKS)
    assert got["value"] == 0.0 and got["before"] == got["after"] == pytest.approx(2 / 3)
    assert got["n_queries"] == 3
