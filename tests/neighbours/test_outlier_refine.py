import numpy as np
import pytest

from vo_similarity.neighbours.outlier import outlier_scores
from vo_similarity.neighbours.refine import refine

from .conftest import clustered


def test_outlier_score_is_mean_of_first_m_distances():
    dist = np.array([[0.1, 0.2, 0.9], [0.5, 0.5, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(outlier_scores(dist, 2), [0.15, 0.5], rtol=1e-6)
    np.testing.assert_allclose(outlier_scores(dist, 10), [0.4, 0.5], rtol=1e-6)
    np.testing.assert_allclose(outlier_scores(dist, 2, block_size=1), [0.15, 0.5], rtol=1e-6)
    with pytest.raises(ValueError):
        outlier_scores(dist, 0)


def test_isolated_point_has_the_largest_outlier_score():
    from vo_similarity.neighbours.search import find_neighbours
    x = clustered(200, 16, clusters=2, spread=0.1, seed=1)
    far = np.ones((1, 16), dtype=np.float32) / 4
    x = np.concatenate([x, far])
    _, dist = find_neighbours(x, np.arange(len(x)), 10)
    assert np.argmax(outlier_scores(dist)) == 200


@pytest.fixture
def four_points():
    x = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0], [0.6, 0.8]], dtype=np.float32)
    return x, np.array([10, 11, 12, 13, 14])


def test_refine_score_and_exclusion(four_points):
    x, ids = four_points
    r = refine(x, ids, [10, 12], n=None)
    # direction (0.5, 0.5): 11 and 14 tie at 0.7, 13 at -0.5; positives excluded
    assert r.ids.tolist() == [11, 14, 13]
    np.testing.assert_allclose(r.scores, [0.7, 0.7, -0.5], rtol=1e-6)
    r = refine(x, ids, [10], negative_ids=[12], n=2)
    assert r.ids.tolist() == [11, 14]          # 0.8 - 0.6 = 0.2 > 0.6 - 0.8
    np.testing.assert_allclose(r.scores, [0.2, -0.2], atol=1e-6)


def test_refine_with_one_positive_is_nearest_neighbour_order(four_points):
    x, ids = four_points
    assert refine(x, ids, [10]).ids.tolist() == [11, 14, 12, 13]


def test_refine_errors(four_points):
    x, ids = four_points
    with pytest.raises(KeyError, match="unknown positive image id.*99"):
        refine(x, ids, [10, 99])
    with pytest.raises(KeyError, match="unknown negative image id.*-5"):
        refine(x, ids, [10], [-5])
    with pytest.raises(ValueError, match="at least one positive"):
        refine(x, ids, [])
    with pytest.raises(ValueError, match="both positive and negative"):
        refine(x, ids, [10, 11], [11])
