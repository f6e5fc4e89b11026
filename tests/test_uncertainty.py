"""Per-cell uncertainty measures: exact values, what they rank high, and their input checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr
from sklearn.neighbors import NearestNeighbors

from spatialedm._uncertainty import neighbor_spread, rank_disagreement


def _brute_force(embedding, layout, k, landmarks):
    d = cdist(layout, landmarks)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)[1][:, 1:]
    return np.array([1 - np.mean([spearmanr(d[i], d[j])[0] for j in idx[i]]) for i in range(len(layout))])


def test_rank_disagreement_is_one_minus_the_mean_spearman_correlation():
    rng = np.random.default_rng(1)
    layout = rng.normal(size=(150, 2))
    embedding = layout + rng.normal(scale=0.5, size=(150, 2))
    # fewer cells than landmarks: every cell is a landmark, so the value does not depend on the seed
    expected = _brute_force(embedding, layout, 30, layout)
    for seed in (0, 7):
        np.testing.assert_allclose(rank_disagreement(embedding, layout, seed=seed), expected, atol=1e-5)


def test_rank_disagreement_with_landmarks_matches_the_seeded_choice():
    rng = np.random.default_rng(2)
    layout = rng.uniform(size=(400, 3))
    embedding = rng.normal(size=(400, 5))
    landmarks = layout[np.random.default_rng(3).choice(400, size=64, replace=False)]
    got = rank_disagreement(embedding, layout, n_neighbors=5, n_landmarks=64, seed=3)
    np.testing.assert_allclose(got, _brute_force(embedding, layout, 5, landmarks), atol=1e-5)


def test_rank_disagreement_ranks_look_alikes_placed_apart_highest():
    rng = np.random.default_rng(0)
    layout = rng.uniform(size=(500, 2))
    embedding = layout.copy()
    embedding[:50] = rng.uniform(size=(50, 2))  # 50 cells whose expression points elsewhere
    u = rank_disagreement(embedding, layout)
    assert u.min() >= 0 and u.max() <= 2
    assert np.median(u[50:]) < 0.2 and np.median(u[:50]) > 0.6
    # an expression with no relation to the layout: the ranks of look-alikes are unrelated
    assert np.median(rank_disagreement(rng.normal(size=(500, 4)), layout)) > 0.7


def test_rank_disagreement_weighs_a_central_cells_displacement_more():
    # the same spread of look-alikes reorders a central cell's distances more than a corner cell's
    rng = np.random.default_rng(4)
    layout = rng.uniform(-1, 1, size=(600, 2))
    layout[0], layout[1] = (0.0, 0.0), (0.95, 0.95)
    offsets = 0.15 * rng.normal(size=(30, 2))
    layout[2:32], layout[32:62] = layout[0] + offsets, layout[1] + offsets
    embedding = rng.normal(size=(600, 3)) * 10
    embedding[2:32] = embedding[0] + 0.01 * rng.normal(size=(30, 3))
    embedding[32:62] = embedding[1] + 0.01 * rng.normal(size=(30, 3))
    u = rank_disagreement(embedding, layout)
    spread = neighbor_spread(embedding, layout, n_neighbors=30)
    assert spread[0] == pytest.approx(spread[1], rel=0.01)
    assert u[0] > 1.5 * u[1]


def test_rank_disagreement_tiny_and_bad_inputs():
    assert rank_disagreement(np.zeros((2, 3)), np.zeros((2, 2))).tolist() == [0.0, 0.0]
    u = rank_disagreement(np.arange(5.0)[:, None], np.arange(10.0).reshape(5, 2))
    assert u.shape == (5,) and np.isfinite(u).all()
    with pytest.raises(ValueError, match="embedding has 4 cells, layout 5"):
        rank_disagreement(np.zeros((4, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="n_landmarks must be between 2 and 256, got 300"):
        rank_disagreement(np.zeros((5, 2)), np.zeros((5, 2)), n_landmarks=300)
