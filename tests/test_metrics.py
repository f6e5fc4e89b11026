from __future__ import annotations

import sys

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
    "sliced_wasserstein",
    "nn_distance_ratio",
    "nn_cv_excess",
    "coverage_recall",
    "coverage_precision",
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
        "sliced_wasserstein",
        "nn_distance_ratio",
        "nn_cv_excess",
        "coverage_recall",
        "coverage_precision",
    ]
    for key in ("cellwise_spearman", "patch_jaccard", "knn_jaccard", "distance_spearman", "trustworthiness"):
        assert out[key] == pytest.approx(1.0), key
    assert out["procrustes_disparity"] == pytest.approx(0.0, abs=1e-12)
    assert out["scale_ratio"] == pytest.approx(1.0)
    assert out["sliced_wasserstein"] == pytest.approx(0.0, abs=1e-12)
    assert out["nn_distance_ratio"] == pytest.approx(1.0)
    assert out["nn_cv_excess"] == pytest.approx(0.0, abs=1e-12)
    assert out["coverage_recall"] == out["coverage_precision"] == 1.0


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


# ----------------------------------------------------------------------------------------------------
# shape (realism) metrics


def _annulus(n: int, rng: np.random.Generator, inner: float = 0.5) -> np.ndarray:
    """Uniform points in the ring inner <= r <= 1: a non-convex tissue with a hole."""
    r = np.sqrt(rng.uniform(inner**2, 1.0, n))
    theta = rng.uniform(0.0, 2 * np.pi, n)
    return np.c_[r * np.cos(theta), r * np.sin(theta)]


def _shape_scores(pred, true) -> dict[str, float]:
    return {
        "sliced_wasserstein": M.sliced_wasserstein(pred, true),
        "nn_distance_ratio": M.nn_distance_ratio(pred, true),
        "nn_cv_excess": M.nn_cv_excess(pred, true),
        **M.coverage(pred, true),
    }


def test_shape_metrics_identity():
    true = _annulus(500, np.random.default_rng(20))
    out = _shape_scores(true, true)
    assert out["sliced_wasserstein"] == pytest.approx(0.0, abs=1e-12)
    assert out["nn_distance_ratio"] == pytest.approx(1.0, rel=1e-12)
    assert out["nn_cv_excess"] == pytest.approx(0.0, abs=1e-12)
    assert out["coverage_recall"] == out["coverage_precision"] == 1.0


@pytest.mark.parametrize("d", [2, 3])
def test_shape_metrics_invariance(d):
    rng = np.random.default_rng(21 + d)
    true = rng.uniform(size=(400, d)) * np.arange(1, d + 1)
    pred = true + rng.normal(scale=0.1, size=true.shape)
    base = _shape_scores(pred, true)
    # a noisy layout is neither perfect nor degenerate, so the comparison below has content
    assert 0.005 < base["sliced_wasserstein"] < 0.2
    assert base["coverage_recall"] < 1.0
    for moved in (
        _similarity(pred, rng, scale=0.02),
        _similarity(pred, rng, scale=40.0),
        pred * np.array([-1.0] + [1.0] * (d - 1)) + 7.0,
    ):
        out = _shape_scores(moved, true)
        for key, value in base.items():
            assert out[key] == pytest.approx(value, abs=1e-9), key


def test_sliced_wasserstein_hand_computed():
    # in 1-D every direction is ±1, so the sliced distance is the RMS gap between sorted normalised values
    true = np.array([[-1.0], [0.0], [1.0], [4.0]])
    pred = np.array([[0.0], [1.0], [1.5], [2.0]])

    def norm(x):
        x = x[:, 0] - x[:, 0].mean()
        return x / np.sqrt(np.mean(x**2))

    expected = np.sqrt(np.mean((np.sort(norm(pred)) - np.sort(norm(true))) ** 2))
    assert expected > 0.1
    assert M.sliced_wasserstein(pred, true, n_directions=7) == pytest.approx(expected, rel=1e-12)
    # a reflected prediction is flipped back by the alignment
    assert M.sliced_wasserstein(-pred, true, n_directions=7) == pytest.approx(expected, rel=1e-12)


def test_sliced_wasserstein_chunks_and_seed(monkeypatch):
    rng = np.random.default_rng(25)
    true = _annulus(500, rng)
    pred = true + rng.normal(scale=0.1, size=true.shape)
    a = M.sliced_wasserstein(pred, true, n_directions=64, seed=3)
    assert a == M.sliced_wasserstein(pred, true, n_directions=64, seed=3)
    assert a != M.sliced_wasserstein(pred, true, n_directions=64, seed=4)
    assert a == pytest.approx(M.sliced_wasserstein(pred, true, n_directions=64, seed=4), rel=0.2)
    # 3 directions per chunk (with a ragged last chunk) give the same value as one chunk
    monkeypatch.setattr(M._common, "_CHUNK_ELEMENTS", 3 * 500)
    assert M.sliced_wasserstein(pred, true, n_directions=64, seed=3) == pytest.approx(a, rel=1e-12)


def test_collapsed_prediction():
    true = np.random.default_rng(26).uniform(size=(400, 2))
    point = np.full_like(true, 3.0)
    # all mass at the centre: the projected second moment of a unit-RMS cloud averages 1/d over directions
    assert M.sliced_wasserstein(point, true) == pytest.approx(np.sqrt(0.5), abs=0.03)
    assert M.nn_distance_ratio(point, true) == 0.0
    assert np.isnan(M.nn_cv_excess(point, true))
    cov = M.coverage(point, true)
    assert cov["coverage_precision"] == 1.0  # the centre lies on the tissue ...
    assert cov["coverage_recall"] < 0.05  # ... but covers almost none of it


def test_shrunk_layout_scores_worse():
    rng = np.random.default_rng(27)
    true = rng.uniform(size=(600, 2))
    good = true + rng.normal(scale=0.01, size=true.shape)
    # half the cells pulled towards the centre, and a few thrown outwards: a blob with stray cells
    centre = true.mean(axis=0)
    shrunk = true.copy()
    half = rng.choice(600, size=300, replace=False)
    shrunk[half] = centre + 0.3 * (true[half] - centre)
    shrunk[:10] = centre + 3.0 * (true[:10] - centre)
    # a uniform similarity shrinkage is no change of shape at all
    assert M.sliced_wasserstein(0.5 * true + 0.5 * centre, true) == pytest.approx(0.0, abs=1e-12)
    s_good, s_shrunk = _shape_scores(good, true), _shape_scores(shrunk, true)
    floor = M.sliced_wasserstein(M.uniform_fill(true, seed=1), true)
    assert s_good["sliced_wasserstein"] < floor < s_shrunk["sliced_wasserstein"]
    assert s_shrunk["nn_distance_ratio"] < 0.9
    assert s_good["nn_distance_ratio"] == pytest.approx(1.0, abs=0.1)
    assert s_shrunk["nn_cv_excess"] > 0.5
    assert abs(s_good["nn_cv_excess"]) < 0.1
    assert s_shrunk["coverage_recall"] < 0.8
    assert s_shrunk["coverage_precision"] < 0.9
    assert s_good["coverage_recall"] == s_good["coverage_precision"] == 1.0


def test_uniform_fill_on_annulus():
    rng = np.random.default_rng(28)
    true = _annulus(600, rng)
    fill = M.uniform_fill(true, seed=3)
    assert fill.shape == true.shape
    assert (fill >= true.min(axis=0)).all() and (fill <= true.max(axis=0)).all()
    np.testing.assert_array_equal(fill, M.uniform_fill(true, seed=3))
    # the fill spreads over the whole box: the hole is filled in
    assert (np.linalg.norm(fill, axis=1) < 0.4).mean() > 0.1
    noisy = true + rng.normal(scale=0.01, size=true.shape)
    assert M.sliced_wasserstein(noisy, true) < 0.03 < 0.05 < M.sliced_wasserstein(fill, true)
    c_noisy, c_fill = M.coverage(noisy, true), M.coverage(fill, true)
    assert c_noisy["coverage_precision"] == 1.0
    assert c_fill["coverage_precision"] < 0.75


def test_uniform_fill_stays_in_frame():
    # rows are paired with the truth along a Morton curve, so the Procrustes fit keeps an elongated
    # fill lengthwise; with arbitrary rows it would turn it and score several times worse
    rng = np.random.default_rng(29)
    true = rng.uniform(size=(2000, 2)) * [3.0, 1.0]
    fill = M.uniform_fill(true, seed=4)
    assert M.sliced_wasserstein(fill, true) < 0.04
    shuffled = fill[rng.permutation(2000)]
    assert M.sliced_wasserstein(shuffled, true) > 0.1
    # same point set as the plain uniform draws, only reordered
    plain = np.random.default_rng(4).uniform(true.min(axis=0), true.max(axis=0), size=true.shape)
    np.testing.assert_array_equal(np.sort(fill, axis=0), np.sort(plain, axis=0))


def test_coverage_precision_drops_with_stray_points():
    rng = np.random.default_rng(30)
    true = rng.uniform(size=(500, 2))
    pred = true + rng.normal(scale=0.01, size=true.shape)
    assert M.coverage(pred, true) == {"coverage_recall": 1.0, "coverage_precision": 1.0}
    stray = pred.copy()
    stray[:25] += 10.0  # 5 % of the cells far off the tissue
    assert M.coverage(stray, true)["coverage_precision"] <= 0.95
    # a larger radius forgives more, never less
    wide = M.coverage(stray, true, factor=50.0)
    assert wide["coverage_recall"] >= M.coverage(stray, true)["coverage_recall"]
    assert M.coverage(stray, true, factor=1e4) == {"coverage_recall": 1.0, "coverage_precision": 1.0}


def test_nn_metrics_with_duplicates():
    rng = np.random.default_rng(31)
    true = rng.uniform(size=(300, 2))
    # every cell stacked on another one: a genuine zero spacing, not a failure
    stacked = np.vstack([true[:150], true[:150]])
    assert M.nn_distance_ratio(stacked, true) == 0.0
    # a few duplicates in the truth keep the median, and the score, well defined
    dup = np.vstack([true[:290], true[:10]])
    assert M.nn_distance_ratio(dup, dup) == pytest.approx(1.0)
    assert M.nn_cv_excess(dup, dup) == pytest.approx(0.0, abs=1e-12)
    # a truth mostly made of duplicates has no spacing to compare with
    assert np.isnan(M.nn_distance_ratio(true, np.vstack([true[:100]] * 3)))


def test_shape_metrics_validation():
    x = np.random.default_rng(32).normal(size=(20, 2))
    for f in (M.sliced_wasserstein, M.nn_distance_ratio, M.nn_cv_excess, M.coverage):
        with pytest.raises(ValueError, match="zero spread"):
            f(x, np.ones((20, 2)))
        with pytest.raises(ValueError, match="same number of rows"):
            f(x, x[:10])
    with pytest.raises(ValueError, match="n_directions"):
        M.sliced_wasserstein(x, x, n_directions=0)
    with pytest.raises(ValueError, match="factor"):
        M.coverage(x, x, factor=0.0)
    with pytest.raises(ValueError, match="true.*2-D"):
        M.uniform_fill(np.zeros(5))


@pytest.fixture
def labelled():
    rng = np.random.default_rng(40)
    true = rng.uniform(size=(300, 2)) * [3.0, 2.0]
    # six spatial domains in a 3 × 2 grid of blocks
    labels = (np.floor(true[:, 0]) + 3 * np.floor(true[:, 1])).astype(int)
    return true, labels


def test_nhood_enrichment_agreement(labelled):
    pytest.importorskip("squidpy")
    true, labels = labelled
    labels_copy, true_copy = labels.copy(), true.copy()
    moved = 2.0 * true[:, ::-1] + 1.0
    assert M.nhood_enrichment_agreement(moved, true, labels, n_perms=20) == pytest.approx(1.0)
    as_list = labels.astype(str).tolist()
    assert M.nhood_enrichment_agreement(true, true, as_list, n_perms=20) == pytest.approx(1.0)
    rng = np.random.default_rng(41)
    noisy = true + rng.normal(scale=0.1, size=true.shape)
    assert M.nhood_enrichment_agreement(noisy, true, labels, n_perms=20) > 0.9
    rand = [
        M.nhood_enrichment_agreement(rng.uniform(size=true.shape), true, labels, n_perms=20) for _ in range(5)
    ]
    assert np.mean(rand) < 0.4
    # caller data untouched
    np.testing.assert_array_equal(labels, labels_copy)
    np.testing.assert_array_equal(true, true_copy)


def test_nhood_enrichment_agreement_validation(labelled, monkeypatch):
    pytest.importorskip("squidpy")
    true, labels = labelled
    with pytest.raises(ValueError, match="at least 2 categories"):
        M.nhood_enrichment_agreement(true, true, np.zeros(300))
    with pytest.raises(ValueError, match="one entry per cell"):
        M.nhood_enrichment_agreement(true, true, labels[:-1])
    with pytest.raises(ValueError, match="missing"):
        M.nhood_enrichment_agreement(true, true, np.where(labels == 0, None, labels.astype(str)))
    with pytest.raises(ValueError, match="n_neighs"):
        M.nhood_enrichment_agreement(true, true, labels, n_neighs=300)
    monkeypatch.setitem(sys.modules, "squidpy", None)  # makes `import squidpy` fail
    with pytest.raises(ImportError, match=r"pip install spatialedm\[plot\]"):
        M.nhood_enrichment_agreement(true, true, labels)


def test_evaluate_shape_keys(labelled):
    pytest.importorskip("squidpy")
    true, labels = labelled
    rng = np.random.default_rng(42)
    pred = true + rng.normal(scale=0.2, size=true.shape)
    out = M.evaluate(pred, true, k=8, seed=5)
    assert "nhood_enrichment_agreement" not in out
    assert out["sliced_wasserstein"] == pytest.approx(M.sliced_wasserstein(pred, true, seed=5), rel=1e-12)
    assert out["nn_distance_ratio"] == pytest.approx(M.nn_distance_ratio(pred, true), rel=1e-12)
    assert out["nn_cv_excess"] == pytest.approx(M.nn_cv_excess(pred, true), abs=1e-12)
    cov = M.coverage(pred, true)
    assert (out["coverage_recall"], out["coverage_precision"]) == pytest.approx(
        (cov["coverage_recall"], cov["coverage_precision"])
    )
    assert out["coverage_recall"] < 1.0
    with_labels = M.evaluate(pred, true, k=8, seed=5, labels=labels)
    assert list(with_labels) == [*out, "nhood_enrichment_agreement"]
    assert with_labels["nhood_enrichment_agreement"] == pytest.approx(
        M.nhood_enrichment_agreement(pred, true, labels, n_neighs=8, seed=5)
    )
    assert 0.5 < with_labels["nhood_enrichment_agreement"] < 1.0


def test_cellwise_scores_are_the_cells_behind_the_median_and_the_calibration():
    rng = np.random.default_rng(8)
    true = rng.uniform(size=(600, 2))
    noise = rng.uniform(0, 0.3, size=600)
    pred = true + noise[:, None] * rng.normal(size=true.shape)
    scores = M.cellwise_scores(pred, true, max_cells=250, seed=3)
    scored = np.isfinite(scores)
    assert scores.shape == (600,) and scored.sum() == 250
    assert np.median(scores[scored]) == pytest.approx(M.cellwise_spearman(pred, true, max_cells=250, seed=3))
    # the noisiest cells score lowest, so the noise is a calibrated uncertainty of 1 - score
    error = 1 - scores[scored]
    rho = np.corrcoef(np.argsort(np.argsort(noise[scored])), np.argsort(np.argsort(error)))[0, 1]
    assert rho == pytest.approx(M.uncertainty_calibration(pred, true, noise, max_cells=250, seed=3))
    assert rho > 0.3
    with pytest.raises(ValueError, match="`max_cells` must be at least 3, got 2"):
        M.cellwise_scores(pred, true, max_cells=2)
