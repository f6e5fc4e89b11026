"""Cell spacing: the reference's scale-free spacing and the relaxation of clumped layouts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

import spatialedm as sem
from spatialedm._spacing import relax_spacing, tissue_spacing
from spatialedm.geometry import unit_rms


@pytest.fixture(scope="module")
def cortex():
    return np.asarray(sem.datasets.osmfish_cortex().obsm["spatial"], dtype=np.float64)


def _median_nn(x):
    from scipy.spatial import cKDTree

    return float(np.median(cKDTree(x).query(x, k=2)[0][:, 1]))


def test_spacing_ignores_each_sections_frame_and_carries_over_cell_numbers(cortex):
    rng = np.random.default_rng(0)
    c = tissue_spacing(cortex)
    # each section is measured in its own frame: move, rotate and scale one copy, the constant is the same
    q, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    moved = 37.0 * cortex @ q + 1e4
    sections = np.repeat([0, 1], len(cortex))
    assert tissue_spacing(np.vstack([cortex, moved]), sections) == pytest.approx(c, rel=1e-9)
    # pooled into one frame, the two copies are not one tissue: the pooled value differs
    assert abs(tissue_spacing(np.vstack([cortex, moved])) - c) > 0.05 * c
    # a random half of the same tissue has the same constant (it scales out the number of cells)
    half = cortex[rng.permutation(len(cortex))[: len(cortex) // 2]]
    assert tissue_spacing(half) == pytest.approx(c, rel=0.15)


def test_spacing_of_degenerate_sections_is_zero():
    assert tissue_spacing(np.zeros((10, 2))) == 0.0
    assert tissue_spacing(np.ones((2, 2))) == 0.0


def test_relaxation_spreads_clumps_to_the_tissue_spacing_and_keeps_the_layout(cortex):
    truth = unit_rms(cortex)
    # a clumped layout: every cell pulled 60 % of the way to its cluster's centre
    labels = KMeans(40, n_init=1, random_state=0).fit_predict(truth)
    centres = np.array([truth[labels == g].mean(0) for g in range(40)])
    clumped = truth + 0.6 * (centres[labels] - truth)
    c = tissue_spacing(cortex)
    relaxed = relax_spacing(clumped, c)

    assert _median_nn(unit_rms(clumped)) / _median_nn(truth) < 0.5
    assert 0.8 <= sem.metrics.nn_distance_ratio(relaxed, truth) <= 1.25
    assert sem.metrics.nn_cv_excess(relaxed, truth) < sem.metrics.nn_cv_excess(clumped, truth) - 0.1
    # neighbourhoods and global arrangement stay: the distance ranks barely move
    before = sem.metrics.cellwise_spearman(clumped, truth)
    assert sem.metrics.cellwise_spearman(relaxed, truth) > before - 0.02
    assert sem.metrics.knn_jaccard(relaxed, clumped, k=10) > 0.5


def test_relaxation_separates_coincident_cells_and_checks_its_step():
    stacked = np.repeat([[0.0, 0.0], [1.0, 0.0]], 50, axis=0)
    relaxed = relax_spacing(stacked, 2.0, seed=1)
    assert np.isfinite(relaxed).all() and _median_nn(relaxed) > 0
    np.testing.assert_array_equal(relax_spacing(stacked, 2.0, seed=1), relaxed)
    np.testing.assert_allclose(relax_spacing(stacked, 0.0), unit_rms(stacked))
    with pytest.raises(ValueError, match="step must lie in"):
        relax_spacing(stacked, 2.0, step=1.5)
