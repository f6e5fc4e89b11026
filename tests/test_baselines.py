from __future__ import annotations

import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from benchmarks.tasks import split_section
from sklearn.neighbors import KNeighborsRegressor, NearestNeighbors

import spatialedm._knn as knn
import spatialedm.baselines as bl
from spatialedm.baselines import (
    expression_pca,
    knn_regression,
    nearest_neighbor,
    optimal_transport,
    random_layout,
)
from spatialedm.datasets import synthetic_tissue
from spatialedm.geometry import unit_rms
from spatialedm.metrics import cellwise_spearman, distance_spearman


@pytest.fixture(scope="module")
def two_sections():
    # seed 5: the two reference sections' random frames differ a lot (naive averaging fails)
    adata = synthetic_tissue(n_cells=900, n_genes=40, n_sections=3, dim=2, seed=5)
    return split_section(adata, batch_key="section")


@pytest.fixture(scope="module")
def one_section():
    """A layered synthetic tissue: one section is the reference, the other the query."""
    adata = synthetic_tissue(n_cells=1000, n_genes=40, n_sections=2, dim=2, seed=3)
    return split_section(adata, batch_key="section")


def _single_section(n=300, n_genes=20, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2))
    loadings = rng.normal(size=(2, n_genes))
    mu = np.exp(3.0 + 1.5 * xy @ loadings)
    adata = ad.AnnData(rng.poisson(mu).astype(np.float32))
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    adata.obs_names = [f"c{i}" for i in range(n)]
    adata.obsm["spatial"] = xy * 100.0
    return adata


def _rows_in(rows: np.ndarray, pool: np.ndarray) -> bool:
    """Whether every row of ``rows`` is (numerically) a row of ``pool``."""
    d, _ = NearestNeighbors(n_neighbors=1).fit(pool).kneighbors(rows)
    return bool(np.all(d < 1e-9))


def test_shapes_and_determinism(two_sections):
    ref, query = two_sections
    pred = knn_regression(ref, query, batch_key="section", n_neighbors=5, n_comps=10)
    assert pred.shape == (query.n_obs, 2)
    assert np.isfinite(pred).all()
    a, params = knn_regression(ref, query, batch_key="section", return_params=True)
    b, params_b = knn_regression(ref, query, batch_key="section", return_params=True)
    np.testing.assert_array_equal(a, b)
    assert params == params_b
    assert params["n_neighbors"] in bl.K_GRID and 1 <= params["n_comps"] <= ref.n_vars
    assert np.isfinite(params["cv_score"])
    _, fixed = knn_regression(ref, query, n_neighbors=5, n_comps=10, return_params=True)
    assert fixed == {"n_neighbors": 5, "n_comps": 10, "cv_score": None}
    nn = nearest_neighbor(ref, query, batch_key="section")
    assert nn.shape == (query.n_obs, 2)
    np.testing.assert_array_equal(nn, nearest_neighbor(ref, query, batch_key="section"))
    assert expression_pca(query, dim=2).shape == (query.n_obs, 2)
    assert expression_pca(query, dim=3, scale_genes=True).shape == (query.n_obs, 3)
    r = random_layout(query, dim=3, seed=1)
    assert r.shape == (query.n_obs, 3)
    np.testing.assert_array_equal(r, random_layout(query, dim=3, seed=1))


def test_cv_prediction_matches_kneighbors_regressor():
    rng = np.random.default_rng(0)
    train, y = rng.normal(size=(60, 3)), rng.normal(size=(60, 2))
    test = np.r_[rng.normal(size=(20, 3)), train[:3]]  # the last three sit exactly on training cells
    dist, idx = NearestNeighbors(n_neighbors=7).fit(train).kneighbors(test)
    expected = KNeighborsRegressor(n_neighbors=7, weights="distance").fit(train, y).predict(test)
    np.testing.assert_allclose(knn._distance_weighted(dist, idx, y), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(knn._distance_weighted(dist, idx, y)[-3:], y[:3], atol=1e-12)


def test_knn_recovers_layout_of_single_section():
    adata = _single_section()
    ref, query = adata[:200].copy(), adata[200:].copy()
    del query.obsm["spatial"]
    pred = knn_regression(ref, query)
    assert distance_spearman(pred, adata.obsm["spatial"][200:]) > 0.6
    # the query's expression alone also carries the layout here
    assert distance_spearman(expression_pca(query), adata.obsm["spatial"][200:]) > 0.5


def test_knn_does_not_read_query_coordinates():
    adata = _single_section()
    ref, query = adata[:200].copy(), adata[200:].copy()
    a = knn_regression(ref, query)
    query.obsm["spatial"] = np.zeros((query.n_obs, 2))
    np.testing.assert_array_equal(a, knn_regression(ref, query))


@pytest.mark.parametrize("sections", [False, True])
def test_selection_never_reads_the_query(two_sections, monkeypatch, sections):
    ref, query = two_sections
    batch_key = "section" if sections else None
    if not sections:
        ref = ref[ref.obs["section"] == "s0"].copy()
    seen = []

    def spy(pred, true, **kwargs):
        seen.append(np.asarray(true, dtype=np.float64))
        return cellwise_spearman(pred, true, **kwargs)

    monkeypatch.setattr(knn, "cellwise_spearman", spy)
    _, params = knn_regression(ref, query, batch_key=batch_key, return_params=True)
    assert seen
    coords = np.asarray(ref.obsm["spatial"], dtype=np.float64)
    for true in seen:  # only reference cells are ever scored
        assert _rows_in(true, coords)
        assert not _rows_in(true, np.asarray(query.obsm["spatial"], dtype=np.float64))
    if sections:  # leave-one-section-out: each held-out part is one whole section
        sizes = {len(t) for t in seen}
        assert sizes == set(ref.obs["section"].value_counts().tolist())
    # a different query (other cells, other expression) gets the same choice
    other = query[::-1][: query.n_obs // 2].copy()
    other.X = other.X * 3.0
    _, params_other = knn_regression(ref, other, batch_key=batch_key, return_params=True)
    assert params_other == params


def test_tuned_knn_beats_random_and_a_bad_setting(one_section):
    ref, query = one_section
    truth = query.obsm["spatial"]
    tuned, params = knn_regression(ref, query, return_params=True)
    bad = knn_regression(ref, query, n_neighbors=1, n_comps=2)
    s_tuned = cellwise_spearman(tuned, truth)
    s_bad = cellwise_spearman(bad, truth)
    s_random = cellwise_spearman(random_layout(query), truth)
    assert s_tuned > s_random + 0.3, (s_tuned, s_random)
    assert s_tuned >= s_bad, (s_tuned, s_bad, params)
    # the held-out score of the choice (on halves and blocks of the reference) is far above chance
    assert params["cv_score"] > 0.1, params


def test_nearest_neighbor_copies_reference_positions(one_section):
    ref, query = one_section
    pred, params = nearest_neighbor(ref, query, return_params=True)
    assert params["n_neighbors"] == 1
    positions = unit_rms(np.asarray(ref.obsm["spatial"], dtype=np.float64))
    assert _rows_in(pred, positions)
    assert len(np.unique(pred, axis=0)) < query.n_obs  # several query cells share a position
    assert cellwise_spearman(pred, query.obsm["spatial"]) > cellwise_spearman(
        random_layout(query), query.obsm["spatial"]
    )


def test_optimal_transport_inside_reference_and_beats_random(one_section):
    ref, query = one_section
    ref, query = ref[:300].copy(), query[:250].copy()
    truth = query.obsm["spatial"]
    pred = optimal_transport(ref, query, n_comps=10)
    assert pred.shape == (query.n_obs, 2)
    positions = unit_rms(np.asarray(ref.obsm["spatial"], dtype=np.float64))
    # barycentres of the locations: inside their bounding box (and convex hull)
    assert np.all(pred >= positions.min(0) - 1e-9) and np.all(pred <= positions.max(0) + 1e-9)
    from scipy.spatial import Delaunay

    assert np.all(Delaunay(positions).find_simplex(pred) >= 0)
    s_ot = cellwise_spearman(pred, truth)
    assert s_ot > cellwise_spearman(random_layout(query), truth) + 0.3, s_ot
    np.testing.assert_array_equal(pred, optimal_transport(ref, query, n_comps=10))


def test_optimal_transport_chunks_and_sections(two_sections, monkeypatch):
    ref, query = two_sections
    query = query[:150].copy()
    monkeypatch.setattr(bl, "OT_MAX_CELLS", 60)  # three chunks
    pred = optimal_transport(ref, query, batch_key="section", n_comps=10, max_locations=120)
    assert pred.shape == (query.n_obs, 2)
    assert np.isfinite(pred).all()
    assert cellwise_spearman(pred, query.obsm["spatial"]) > 0.3


def test_optimal_transport_without_pot(one_section, monkeypatch):
    ref, query = one_section
    monkeypatch.setitem(sys.modules, "ot", None)
    with pytest.raises(ImportError, match="pip install pot"):
        optimal_transport(ref, query)


def test_gene_matching_by_name(two_sections):
    ref, query = two_sections
    a = knn_regression(ref, query, batch_key="section")
    perm = np.random.default_rng(0).permutation(query.n_vars)
    shuffled = query[:, perm].copy()
    b = knn_regression(ref, shuffled, batch_key="section")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # extra query-only genes are ignored
    extra = ad.AnnData(
        np.c_[query.X, np.ones((query.n_obs, 2), dtype=np.float32)],
        obs=query.obs,
        var=pd.DataFrame(index=[*query.var_names, "extra1", "extra2"]),
    )
    np.testing.assert_allclose(a, knn_regression(ref, extra, batch_key="section"), rtol=1e-5, atol=1e-6)


def test_missing_genes_use_the_shared_ones(two_sections):
    ref, query = two_sections
    half = query[:, : query.n_vars // 2].copy()
    pred, params = knn_regression(ref, half, batch_key="section", return_params=True)
    assert pred.shape == (query.n_obs, 2)
    assert params["n_comps"] <= half.n_vars


@pytest.mark.parametrize("method", [knn_regression, nearest_neighbor, optimal_transport])
def test_too_few_shared_genes_raise(two_sections, method):
    ref, query = two_sections
    other = query.copy()
    other.var_names = [f"other_{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="shares 0 of the model's 40 genes"):
        method(ref, other)
    one = query.copy()
    one.var_names = [ref.var_names[0]] + [f"other_{i}" for i in range(one.n_vars - 1)]
    with pytest.raises(ValueError, match="shares 1 of the model's 40 genes"):
        method(ref, one)


def test_missing_layer_and_keys(two_sections):
    ref, query = two_sections
    with pytest.raises(KeyError, match="nope"):
        knn_regression(ref, query, layer="nope")
    with pytest.raises(KeyError, match="nope"):
        knn_regression(ref, query, batch_key="nope")
    with pytest.raises(KeyError, match="nope"):
        knn_regression(ref, query, query_batch_key="nope")
    with pytest.raises(KeyError, match="nope"):
        knn_regression(ref, query, spatial_key="nope")
    with pytest.raises(KeyError, match="nope"):
        nearest_neighbor(ref, query, spatial_key="nope")
    with pytest.raises(KeyError, match="nope"):
        expression_pca(query, batch_key="nope")


def test_procrustes_align_recovers_similarity():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(50, 2))
    q, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    source = 3.0 * target @ q + np.array([5.0, -2.0])
    np.testing.assert_allclose(knn._procrustes_align(source, target), target, atol=1e-10)


def test_multisection_alignment_beats_naive_average(two_sections, monkeypatch):
    ref, query = two_sections
    truth = query.obsm["spatial"]
    aligned = knn_regression(ref, query, batch_key="section", n_neighbors=10, n_comps=30)
    # naive: average the per-section predictions without moving them into one frame
    monkeypatch.setattr(knn, "_procrustes_align", lambda source, target: source)
    naive = knn_regression(ref, query, batch_key="section", n_neighbors=10, n_comps=30)
    s_aligned = cellwise_spearman(aligned, truth)
    s_naive = cellwise_spearman(naive, truth)
    assert s_aligned > s_naive + 0.2, (s_aligned, s_naive)
    # and combining the aligned sections is at least as good as the best single section
    singles = [
        cellwise_spearman(
            knn_regression(ref[ref.obs["section"] == s].copy(), query, n_neighbors=10, n_comps=30), truth
        )
        for s in ("s0", "s1")
    ]
    assert s_aligned > max(singles) - 0.01, (s_aligned, singles)


def test_selection_keeps_the_plain_recipe_unless_clearly_beaten():
    from spatialedm._knn import _one_se_choice

    rng = np.random.default_rng(0)
    # 8 held-out parts of different difficulty (the spread that dominates real fold scores), candidates
    # nearly equal: the best one's edge of about 0.01 is well inside its standard error (~0.035)
    noisy = 0.5 + 0.1 * rng.normal(size=(8, 1, 1)) + 0.005 * rng.normal(size=(8, 3, 2))
    noisy[:, 0, 0] += 0.01
    assert _one_se_choice(noisy, (1, 1))[0] == (1, 1)
    clear = noisy.copy()
    clear[:, 0, 0] += 0.2  # better on every fold by far more than its standard error
    assert _one_se_choice(clear, (1, 1))[0] == (0, 0)
