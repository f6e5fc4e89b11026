from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from benchmarks.tasks import split_section

import spatialedm.baselines as bl
from spatialedm.baselines import expression_pca, knn_regression, random_layout
from spatialedm.datasets import synthetic_tissue
from spatialedm.metrics import cellwise_spearman, distance_spearman


@pytest.fixture(scope="module")
def two_sections():
    # seed 5: the two reference sections' random frames differ a lot (naive averaging fails)
    adata = synthetic_tissue(n_cells=900, n_genes=40, n_sections=3, dim=2, seed=5)
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


def test_shapes(two_sections):
    ref, query = two_sections
    pred = knn_regression(ref, query, batch_key="section", n_neighbors=5, n_comps=10)
    assert pred.shape == (query.n_obs, 2)
    assert np.isfinite(pred).all()
    assert expression_pca(query, dim=2).shape == (query.n_obs, 2)
    assert expression_pca(query, dim=3, scale_genes=True).shape == (query.n_obs, 3)
    r = random_layout(query, dim=3, seed=1)
    assert r.shape == (query.n_obs, 3)
    np.testing.assert_array_equal(r, random_layout(query, dim=3, seed=1))


def test_knn_recovers_layout_of_single_section():
    adata = _single_section()
    ref, query = adata[:200].copy(), adata[200:].copy()
    del query.obsm["spatial"]
    pred = knn_regression(ref, query, n_neighbors=10)
    assert distance_spearman(pred, adata.obsm["spatial"][200:]) > 0.6
    # the query's expression alone also carries the layout here
    assert distance_spearman(expression_pca(query), adata.obsm["spatial"][200:]) > 0.5


def test_knn_does_not_read_query_coordinates():
    adata = _single_section()
    ref, query = adata[:200].copy(), adata[200:].copy()
    a = knn_regression(ref, query)
    query.obsm["spatial"] = np.zeros((query.n_obs, 2))
    np.testing.assert_array_equal(a, knn_regression(ref, query))


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


def test_no_shared_genes_raises(two_sections):
    ref, query = two_sections
    other = query.copy()
    other.var_names = [f"other_{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="shares 0 of the model"):
        knn_regression(ref, other)
    one = query.copy()
    one.var_names = [ref.var_names[0]] + [f"other_{i}" for i in range(one.n_vars - 1)]
    with pytest.raises(ValueError, match="shares 1 of the model"):
        knn_regression(ref, one)


def test_missing_layer_and_keys(two_sections):
    ref, query = two_sections
    with pytest.raises(KeyError, match="nope"):
        knn_regression(ref, query, layer="nope")
    with pytest.raises(KeyError, match="nope"):
        knn_regression(ref, query, batch_key="nope")
    with pytest.raises(KeyError, match="nope"):
        knn_regression(ref, query, spatial_key="nope")


def test_procrustes_align_recovers_similarity():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(50, 2))
    q, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    source = 3.0 * target @ q + np.array([5.0, -2.0])
    np.testing.assert_allclose(bl._procrustes_align(source, target), target, atol=1e-10)


def test_multisection_alignment_beats_naive_average(two_sections, monkeypatch):
    ref, query = two_sections
    truth = query.obsm["spatial"]
    aligned = knn_regression(ref, query, batch_key="section")
    # naive: average the per-section predictions without moving them into one frame
    monkeypatch.setattr(bl, "_procrustes_align", lambda source, target: source)
    naive = knn_regression(ref, query, batch_key="section")
    s_aligned = cellwise_spearman(aligned, truth)
    s_naive = cellwise_spearman(naive, truth)
    assert s_aligned > s_naive + 0.2, (s_aligned, s_naive)
    # and combining the aligned sections is at least as good as the best single section
    singles = [
        cellwise_spearman(knn_regression(ref[ref.obs["section"] == s].copy(), query), truth)
        for s in ("s0", "s1")
    ]
    assert s_aligned > max(singles) - 0.01, (s_aligned, singles)
