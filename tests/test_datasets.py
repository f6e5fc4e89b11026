from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neighbors import KNeighborsRegressor

import spatialedm.datasets as D


def _dense(x):
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


def test_public_names():
    assert sorted(D.__all__) == sorted(
        [
            "drosophila_embryo",
            "drosophila_scrna",
            "osmfish_cortex",
            "osmfish_scrna",
            "pool_spots",
            "split_by_mask",
            "split_halves",
            "synthetic_tissue",
        ]
    )


@pytest.mark.parametrize(
    ("loader", "shape", "spatial_dim"),
    [
        (D.drosophila_embryo, (3039, 84), 3),
        (D.drosophila_scrna, (1297, 8924), None),
        (D.osmfish_cortex, (3405, 33), 2),
        (D.osmfish_scrna, (1000, 33), None),
    ],
)
def test_real_loader(loader, shape, spatial_dim):
    adata = loader()
    assert adata.shape == shape
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    x = _dense(adata.X)
    assert np.isfinite(x).all() and x.min() >= 0
    if spatial_dim is None:
        assert "spatial" not in adata.obsm
    else:
        xy = adata.obsm["spatial"]
        assert xy.shape == (shape[0], spatial_dim)
        assert np.isfinite(xy).all()
    src = adata.uns["source"]
    assert {"package", "version", "members", "license"} <= set(src)
    # a fresh object every call
    adata.obs["tmp"] = 1
    assert "tmp" not in loader().obs


def test_osmfish_counts_and_duplicates():
    adata = D.osmfish_cortex()
    x = adata.X
    assert np.array_equal(x, np.round(x))
    assert np.array_equal(adata.layers["counts"], x)
    assert adata.obs["duplicate"].dtype == bool
    assert int(adata.obs["duplicate"].sum()) == 316
    # flagged rows really repeat an earlier row (position and counts)
    both = pd.DataFrame(np.c_[adata.obsm["spatial"], x])
    assert np.array_equal(both.duplicated(keep="first").to_numpy(), adata.obs["duplicate"].to_numpy())
    sc = D.osmfish_scrna()
    assert np.array_equal(sc.X, np.round(sc.X))
    assert len(set(adata.var_names) & set(sc.var_names)) == 33


def test_drosophila_gene_overlap():
    atlas, sc = D.drosophila_embryo(), D.drosophila_scrna()
    assert len(set(atlas.var_names) & set(sc.var_names)) == 84
    assert int(sc.var["in_atlas"].sum()) == 84
    assert sparse.issparse(sc.X) and sc.X.dtype == np.float32


@pytest.mark.parametrize(
    ("n_cells", "n_genes", "n_sections", "dim"),
    [(300, 20, 1, 2), (601, 15, 3, 3), (50, 5, 2, 2)],
)
def test_synthetic_shapes(n_cells, n_genes, n_sections, dim):
    adata = D.synthetic_tissue(n_cells=n_cells, n_genes=n_genes, n_sections=n_sections, dim=dim, seed=3)
    assert adata.shape == (n_cells, n_genes)
    assert adata.obs_names.is_unique
    assert isinstance(adata.X, np.ndarray) and adata.X.dtype == np.float32
    assert np.array_equal(adata.X, np.round(adata.X)) and adata.X.min() >= 0
    assert np.array_equal(adata.layers["counts"], adata.X)
    xy = adata.obsm["spatial"]
    assert xy.shape == (n_cells, dim) and xy.dtype == np.float32 and np.isfinite(xy).all()
    for key in ("section", "cell_type", "domain"):
        assert isinstance(adata.obs[key].dtype, pd.CategoricalDtype)
    assert list(adata.obs["section"].cat.categories) == [f"s{i}" for i in range(n_sections)]
    counts = adata.obs["section"].value_counts()
    assert counts.max() - counts.min() <= 1


def test_synthetic_sparse_above_limit(monkeypatch):
    import spatialedm.datasets._synthetic as synth

    dense = D.synthetic_tissue(n_cells=500, n_genes=20, n_sections=2, seed=0)
    # lower the dense/sparse threshold and shrink the chunks instead of simulating >5e6 entries
    monkeypatch.setattr(synth, "_DENSE_LIMIT", 1000)
    monkeypatch.setattr(synth, "_CHUNK", 128)
    adata = D.synthetic_tissue(n_cells=500, n_genes=20, n_sections=2, seed=0)
    assert sparse.issparse(adata.X) and adata.X.format == "csr" and adata.X.dtype == np.float32
    assert sparse.issparse(adata.layers["counts"])
    assert adata.X.shape == dense.X.shape and np.isfinite(adata.X.data).all()


def test_synthetic_deterministic():
    a = D.synthetic_tissue(n_cells=400, n_genes=10, n_sections=2, seed=7)
    b = D.synthetic_tissue(n_cells=400, n_genes=10, n_sections=2, seed=7)
    c = D.synthetic_tissue(n_cells=400, n_genes=10, n_sections=2, seed=8)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.obsm["spatial"], b.obsm["spatial"])
    assert a.obs.equals(b.obs)
    assert not np.array_equal(a.X, c.X)


def test_synthetic_sections_have_own_frames():
    adata = D.synthetic_tissue(n_cells=2000, n_genes=10, n_sections=2, seed=0)
    s0 = adata[adata.obs["section"] == "s0"].obsm["spatial"]
    s1 = adata[adata.obs["section"] == "s1"].obsm["spatial"]
    assert not np.allclose(s0.mean(0), s1.mean(0), atol=1.0)


def test_synthetic_batch_effect():
    adata = D.synthetic_tissue(n_cells=4000, n_genes=30, n_sections=2, seed=0)
    sec = adata.obs["section"].to_numpy()
    m0 = np.log1p(adata.X[sec == "s0"]).mean(0)
    m1 = np.log1p(adata.X[sec == "s1"]).mean(0)
    # same tissue, so gene means differ between sections only through the technical factor
    assert np.abs(m0 - m1).mean() > 0.1


@pytest.mark.parametrize("dim", [2, 3])
def test_synthetic_expression_carries_spatial_signal(dim):
    adata = D.synthetic_tissue(n_cells=1600, n_genes=40, n_sections=2, dim=dim, seed=1)
    sec0 = adata[adata.obs["section"] == "s0"]
    x = np.log1p(sec0.X / sec0.X.sum(1, keepdims=True) * 1e3)
    x -= x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    pcs = u[:, :10] * s[:10]
    xy = sec0.obsm["spatial"]
    cv = KFold(5, shuffle=True, random_state=0)
    knn = KNeighborsRegressor(15)
    r2 = cross_val_score(knn, pcs, xy, cv=cv).mean()
    shuffled = xy[np.random.default_rng(0).permutation(len(xy))]
    r2_null = cross_val_score(knn, pcs, shuffled, cv=cv).mean()
    assert r2 > 0.3 and r2 > r2_null + 0.25
    # both axes of the canonical frame are predictable, not just the layer axis
    canon = sec0.obsm["spatial_canonical"]
    for axis in range(dim):
        r2_axis = cross_val_score(knn, pcs, canon[:, axis], cv=cv).mean()
        assert r2_axis > 0.1, axis


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 4}, "dim"),
        ({"n_genes": 1}, "n_genes"),
        ({"n_sections": 0}, "n_sections"),
        ({"n_cells": 3, "n_sections": 4}, "n_cells"),
    ],
)
def test_synthetic_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        D.synthetic_tissue(**kwargs)
