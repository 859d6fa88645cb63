import numpy as np
import pytest

from vo_similarity.evaluate.metrics import invariance, mean_average_precision, precision_at_k


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
