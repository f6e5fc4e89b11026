from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import procrustes as scipy_procrustes
from scipy.stats import special_ortho_group

from spatialedm import metrics as M

INVARIANT = [
    "cellwise_spearman",
    "patch_jaccard",
    "knn_jaccard",
    "distance_spearman",
    "trustworthiness",
    "procrustes_disparity",
]


def _similarity(x: np.ndarray, rng: np.random.Generator, scale: float | None = None) -> np.ndarray:
    """Random rotation + reflection + translation + scale."""
    d = x.shape[1]
    r = special_ortho_group.rvs(d, random_state=rng) if d > 1 else np.eye(1)
    r = r @ np.diag([-1.0] + [1.0] * (d - 1))  # include a reflection
    s = rng.uniform(0.01, 100.0) if scale is None else scale
    return s * x @ r + rng.normal(scale=50.0, size=d)


@pytest.fixture
def layout():
    rng = np.random.default_rng(0)
    true = rng.uniform(size=(300, 2))
    pred = true + rng.normal(scale=0.05, size=true.shape)
    return pred, true


def test_perfect_prediction():
    true = np.random.default_rng(1).normal(size=(400, 3))
    out = M.evaluate(true, true)
    assert list(out) == [
        "cellwise_spearman",
        "patch_jaccard",
        "knn_jaccard",
        "distance_spearman",
        "trustworthiness",
        "procrustes_disparity",
        "scale_ratio",
    ]
    for key in ("cellwise_spearman", "patch_jaccard", "knn_jaccard", "distance_spearman", "trustworthiness"):
        assert out[key] == pytest.approx(1.0), key
    assert out["procrustes_disparity"] == pytest.approx(0.0, abs=1e-12)
    assert out["scale_ratio"] == pytest.approx(1.0)


@pytest.mark.parametrize("d", [2, 3])
def test_invariance_hand_built(d):
    rng = np.random.default_rng(d)
    true = rng.uniform(size=(250, d))
    pred = true + rng.normal(scale=0.08, size=true.shape)
    base = M.evaluate(pred, true)
    moved = _similarity(pred, rng, scale=3.7)
    out = M.evaluate(moved, true)
    for key in INVARIANT:
        assert out[key] == pytest.approx(base[key], abs=1e-9), key
    assert out["scale_ratio"] == pytest.approx(3.7 * base["scale_ratio"], rel=1e-9)
    # pure reflection and pure translation
    refl = pred * np.array([-1.0] + [1.0] * (d - 1)) - 10.0
    out = M.evaluate(refl, true)
    for key in INVARIANT:
        assert out[key] == pytest.approx(base[key], abs=1e-9), key


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(12, 200),
    d=st.sampled_from([2, 3]),
    noise=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_invariance_property(n, d, noise, seed):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(n, d))
    pred = true + noise * rng.normal(size=(n, d))
    scale = float(rng.uniform(0.1, 10.0))
    moved = _similarity(pred, rng, scale=scale)
    k = 5
    funcs = {
        "knn_jaccard": lambda p, t: M.knn_jaccard(p, t, k=k),
        "patch_jaccard": lambda p, t: M.patch_jaccard(p, t, k=k, patch=32, n_patches=5),
        "distance_spearman": M.distance_spearman,
        "cellwise_spearman": M.cellwise_spearman,
        "trustworthiness": lambda p, t: M.trustworthiness(p, t, k=k),
        "procrustes_disparity": M.procrustes_disparity,
    }
    for name, f in funcs.items():
        a, b = f(pred, true), f(moved, true)
        assert np.isclose(a, b, atol=1e-7, equal_nan=True), (name, a, b)
    assert np.isclose(M.scale_ratio(moved, true), scale * M.scale_ratio(pred, true), rtol=1e-9)
    assert 0.0 <= M.procrustes_disparity(pred, true) <= 1.0


def test_random_prediction_scores_low():
    rng = np.random.default_rng(2)
    true, pred = rng.uniform(size=(500, 2)), rng.uniform(size=(500, 2))
    assert M.knn_jaccard(pred, true) < 0.2
    assert M.patch_jaccard(pred, true) < 0.2
    assert abs(M.distance_spearman(pred, true)) < 0.1
    assert abs(M.cellwise_spearman(pred, true)) < 0.15
    assert M.procrustes_disparity(pred, true) > 0.9
    assert M.trustworthiness(pred, true) < 0.6


def test_knn_jaccard_hand_computed():
    # points on a line with gaps 1, 2, 4, 8 (no distance ties); pred swaps the last two positions
    true = np.array([[0.0, 0], [1, 0], [3, 0], [7, 0], [15, 0]])
    pred = np.array([[0.0, 0], [1, 0], [3, 0], [15, 0], [7, 0]])
    # k=1: true NN 0→1, 1→0, 2→1, 3→2, 4→3; pred NN 0→1, 1→0, 2→1, 3→4, 4→2  → 3 of 5 match
    assert M.knn_jaccard(pred, true, k=1) == pytest.approx(3 / 5)
    # k=2: cells 0-2 keep {1,2}, {0,2}, {1,0}; cell 3: {4,2} vs {2,1}; cell 4: {2,1} vs {3,2} → 1/3 each
    assert M.knn_jaccard(pred, true, k=2) == pytest.approx((3 + 2 / 3) / 5)


def test_knn_jaccard_duplicates():
    # exact duplicate points must not break the self-exclusion
    true = np.random.default_rng(3).normal(size=(50, 2))
    true = np.vstack([true, true[:5]])
    assert M.knn_jaccard(true, true, k=4) == pytest.approx(1.0)


def test_scale_ratio_hand_computed():
    true = np.random.default_rng(4).normal(size=(100, 2))
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    assert M.scale_ratio(0.5 * true @ rot + 3.0, true) == pytest.approx(0.5)
    # exact small case: a unit square vs a square of side 2 (RMS 1/√2 vs √2)
    sq = np.array([[0.0, 0], [1, 0], [1, 1], [0, 1]])
    assert M.scale_ratio(2 * sq, sq) == pytest.approx(2.0)


def test_procrustes_matches_scipy(layout):
    pred, true = layout
    _, _, ref = scipy_procrustes(true, pred)
    assert M.procrustes_disparity(pred, true) == pytest.approx(ref, rel=1e-9)
    assert M.procrustes_disparity(np.zeros_like(pred), true) == 1.0


def test_dimension_mismatch_zero_pads():
    rng = np.random.default_rng(5)
    true = np.c_[rng.uniform(size=(200, 2)), np.zeros(200)]
    out2 = M.evaluate(true[:, :2], true)
    assert out2["knn_jaccard"] == pytest.approx(1.0)
    assert out2["procrustes_disparity"] == pytest.approx(0.0, abs=1e-12)
    true3 = rng.normal(size=(200, 3))
    out = M.evaluate(true3[:, :2], true3)
    assert 0.0 < out["procrustes_disparity"] < 1.0


def test_subsampling_is_seeded_and_bounded():
    rng = np.random.default_rng(6)
    true = rng.uniform(size=(1200, 2))
    pred = true + rng.normal(scale=0.1, size=true.shape)
    a = M.cellwise_spearman(pred, true, max_cells=400, seed=1)
    assert a == M.cellwise_spearman(pred, true, max_cells=400, seed=1)
    assert a == pytest.approx(M.cellwise_spearman(pred, true, max_cells=1200), abs=0.05)
    b = M.distance_spearman(pred, true, max_pairs=20_000, seed=1)
    assert b == M.distance_spearman(pred, true, max_pairs=20_000, seed=1)
    assert b == pytest.approx(M.distance_spearman(pred, true, max_pairs=10**7), abs=0.02)
    assert M.trustworthiness(pred, true, max_cells=400, seed=2) == M.trustworthiness(
        pred, true, max_cells=400, seed=2
    )
    # small sets use every patch cell once
    small = true[:100]
    assert M.patch_jaccard(small, small, patch=128) == 1.0


@pytest.mark.parametrize(
    ("pred", "true", "match"),
    [
        (np.zeros((10, 2)), np.zeros((11, 2)), "same number of rows"),
        (np.full((10, 2), np.nan), np.zeros((10, 2)), "pred.*NaN"),
        (np.zeros((10, 2)), np.array([[np.inf, 0]] * 10), "true.*NaN or infinite"),
        (np.zeros((1, 2)), np.zeros((1, 2)), "at least 2"),
        (np.zeros(10), np.zeros((10, 2)), "pred.*2-D"),
    ],
)
def test_validation(pred, true, match):
    for f in (M.knn_jaccard, M.distance_spearman, M.cellwise_spearman, M.procrustes_disparity, M.scale_ratio):
        with pytest.raises(ValueError, match=match):
            f(pred, true)


def test_validation_k_and_degenerate_true():
    x = np.random.default_rng(7).normal(size=(10, 2))
    with pytest.raises(ValueError, match="`k`"):
        M.knn_jaccard(x, x, k=10)
    with pytest.raises(ValueError, match="`k`"):
        M.trustworthiness(x, x, k=5)
    with pytest.raises(ValueError, match="zero spread"):
        M.procrustes_disparity(x, np.ones((10, 2)))
    # evaluate lowers k for small sets instead of failing
    out = M.evaluate(x, x, k=10)
    assert out["knn_jaccard"] == pytest.approx(1.0)
