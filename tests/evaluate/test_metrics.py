import numpy as np
import pytest

from vo_similarity.evaluate.metrics import (
    category_precision,
    invariance,
    mean_average_precision,
    precision_at_k,
)
from vo_similarity.learn.data import is_validation


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_separated_classes_score_one():
    vectors = unit([[1, 0.01], [1, 0.02], [1, 0.03], [0.01, 1], [0.02, 1], [0.03, 1]])
    labels = np.array(list("aaabbb"), dtype=object)
    assert precision_at_k(vectors, labels, 2)["macro"] == 1.0
    assert mean_average_precision(vectors, labels)["macro"] == pytest.approx(1.0)


def test_known_mixed_case():
    # on a line of angles: a0 a1 b0 | b1 far away; each query's ranking is by angle distance
    angles = np.radians([0, 10, 20, 90])
    vectors = np.stack([np.cos(angles), np.sin(angles)], 1)
    labels = np.array(["a", "a", "b", "b"], dtype=object)
    p1 = precision_at_k(vectors, labels, 1)
    # nearest: a0->a1 (hit), a1->a0 or b0 (tie at 10 deg; stable order picks a0: hit),
    # b0->a1 (miss), b1->b0 (hit)
    assert p1["per_class"] == {"a": 1.0, "b": 0.5}
    assert p1["macro"] == 0.75
    # AP: a0 ranks a1,b0,b1 -> 1; a1 ranks a0,b0,b1 -> 1; b0 ranks a1,a0,b1 -> 1/3;
    # b1 ranks b0,a1,a0 -> 1
    m = mean_average_precision(vectors, labels)
    assert m["micro"] == pytest.approx((1 + 1 + 1 / 3 + 1) / 4)
    assert m["macro"] == pytest.approx((1 + (1 / 3 + 1) / 2) / 2)


def test_invariance_counts_own_copy_at_rank_one():
    rng = np.random.default_rng(0)
    originals = unit(rng.normal(size=(20, 8)))
    assert invariance(originals, originals)["top1"] == 1.0
    shuffled = originals[np.r_[1:20, 0]]
    result = invariance(originals, shuffled)
    assert result["top1"] == 0.0 and result["mean_rank"] > 1
    half = originals.copy()
    half[:10] = shuffled[:10]
    assert invariance(originals, half)["top1"] == 0.5


def _reference_category_precision(vectors, categories, ids, k, min_size, fraction):
    """A loop over queries: the gallery is the classes of >= min_size images."""
    sizes = {c: list(categories).count(c) for c in set(categories) if c}
    gallery = [i for i, c in enumerate(categories) if sizes.get(c, 0) >= min_size]
    held = is_validation(np.asarray(ids), fraction)
    out = {}
    for half, want in (("held_out", True), ("tuning", False)):
        per_class = {}
        for q in gallery:
            if bool(held[q]) != want:
                continue
            others = sorted((g for g in gallery if g != q),
                            key=lambda g: -float(vectors[q] @ vectors[g]))
            hits = sum(categories[g] == categories[q] for g in others[:k]) / k
            per_class.setdefault(categories[q], []).append(hits)
        out[half] = {c: float(np.mean(v)) for c, v in per_class.items()}
    return out


def test_category_precision_matches_a_loop_and_ignores_small_classes():
    rng = np.random.default_rng(3)
    cats = np.array(["a"] * 30 + ["b"] * 25 + ["c"] * 5 + [""] * 10, dtype=object)
    centres = {"a": rng.normal(size=8), "b": rng.normal(size=8), "c": rng.normal(size=8),
               "": np.zeros(8)}
    vectors = unit([centres[c] + rng.normal(scale=1.2, size=8) for c in cats])
    ids = np.arange(1000, 1000 + len(cats))
    got = category_precision(vectors, cats, ids, k=5, min_class_size=20, n_boot=200)
    want = _reference_category_precision(vectors, cats, ids, 5, 20, 0.5)
    assert got["classes"] == {"a": 30, "b": 25}  # c (5 images) and unlabelled take no part
    for half in ("held_out", "tuning"):
        assert got[half]["per_class"] == pytest.approx(want[half])
        assert got[half]["macro"] == pytest.approx(np.mean(list(want[half].values())))
        assert got[half]["ci_low"] <= got[half]["macro"] <= got[half]["ci_high"]
    assert got["held_out"]["n_queries"] + got["tuning"]["n_queries"] == 55
    assert 0 < got["held_out"]["n_queries"] < 55  # both halves are used


def test_category_precision_is_empty_without_a_large_enough_class():
    vectors = unit(np.eye(4) + 0.1)
    assert category_precision(vectors, np.array(list("aabb"), dtype=object), np.arange(4)) == {}
