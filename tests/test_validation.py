from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import spatialedm as sem


@pytest.fixture
def small():
    return sem.datasets.synthetic_tissue(n_cells=80, n_genes=10, n_sections=1, seed=0)


@pytest.mark.parametrize(
    ("coords", "match"),
    [
        (lambda n: np.zeros((n, 1)), "must have 2 or 3 columns"),
        (lambda n: np.zeros((n, 4)), "must have 2 or 3 columns"),
        (lambda n: np.full((n, 2), "a"), "must be numeric"),
    ],
)
def test_bad_coordinates(small, coords, match):
    small.obsm["bad"] = coords(small.n_obs)
    with pytest.raises(ValueError, match=match):
        sem.SpatialEDM.setup_anndata(small, spatial_key="bad")


def test_nan_coordinates_named(small):
    c = np.array(small.obsm["spatial"], dtype=float)
    c[3, 0] = np.nan
    c[5, 1] = np.inf
    small.obsm["spatial"] = c
    with pytest.raises(ValueError, match="2 cells with NaN or infinite coordinates"):
        sem.SpatialEDM.setup_anndata(small)


def test_nan_expression(small):
    X = np.asarray(small.X, dtype=np.float32).copy()
    X[0, 0] = np.nan
    small.X = X
    with pytest.raises(ValueError, match="adata.X contains NaN"):
        sem.SpatialEDM.setup_anndata(small)


def test_empty_cells_named(small):
    X = np.asarray(small.X, dtype=np.float32).copy()
    X[7] = 0
    small.X = X
    with pytest.raises(ValueError, match="1 cells with no expression"):
        sem.SpatialEDM.setup_anndata(small)


def test_missing_layer_and_batch_key(small):
    with pytest.raises(KeyError, match="layer 'raw' not found"):
        sem.SpatialEDM.setup_anndata(small, layer="raw")
    with pytest.raises(KeyError, match="batch_key 'sample'"):
        sem.SpatialEDM.setup_anndata(small, batch_key="sample")


def test_duplicated_names(small):
    small.var_names = ["g0"] * 2 + list(small.var_names[2:])
    with pytest.raises(ValueError, match="var_names has duplicates"):
        sem.SpatialEDM.setup_anndata(small)


def test_unregistered_anndata(small):
    with pytest.raises(ValueError, match="setup_anndata"):
        sem.SpatialEDM(small)


@pytest.mark.parametrize("fmt", ["csr", "csc", "int", "float64"])
def test_expression_formats_register(small, fmt):
    X = np.asarray(small.X)
    small.X = {
        "csr": sparse.csr_matrix(X),
        "csc": sparse.csc_matrix(X),
        "int": X.astype(np.int64),
        "float64": X.astype(np.float64),
    }[fmt]
    sem.SpatialEDM.setup_anndata(small)
    model = sem.SpatialEDM(small, dim=8, n_hidden=16, n_latent=8, n_inducing=4, n_heads=2)
    assert model.preprocessor_["is_counts"]


def test_empty_query(trained, tissue):
    with pytest.raises(ValueError, match="no cells"):
        trained.get_latent_coordinates(tissue[:0].copy())


def test_query_without_shared_genes(trained, tissue):
    q = tissue.copy()
    q.var_names = [f"other{i}" for i in range(q.n_vars)]
    with pytest.raises(ValueError, match="shares 0 of the model's 20 genes"):
        trained.get_latent_coordinates(q)


def test_query_duplicated_genes(trained, tissue):
    q = tissue.copy()
    q.var_names = ["g"] * q.n_vars
    with pytest.raises(ValueError, match="duplicated gene names"):
        trained.get_latent_coordinates(q)


def test_sparse_query_matches_dense(trained, tissue):
    q = tissue[:60].copy()
    dense = trained.get_latent_coordinates(q, seed=0, key_added=None)
    q.X = sparse.csr_matrix(np.asarray(q.X))
    np.testing.assert_allclose(trained.get_latent_coordinates(q, seed=0, key_added=None), dense, atol=1e-5)


def test_backed_query(trained, tissue, tmp_path):
    q = tissue[:60].copy()
    q.X = np.asarray(q.X, dtype=np.float32)
    dense = trained.get_latent_coordinates(q, seed=0, key_added=None)
    path = tmp_path / "q.h5ad"
    q.write_h5ad(path)
    import anndata as ad

    backed = ad.read_h5ad(path, backed="r")
    np.testing.assert_allclose(
        trained.get_latent_coordinates(backed, seed=0, key_added=None), dense, atol=1e-5
    )


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(2, 40),
    g=st.integers(1, 12),
    d=st.sampled_from([2, 3]),
    counts=st.booleans(),
    sparse_x=st.booleans(),
    nan_at=st.one_of(st.none(), st.integers(0, 10_000)),
    seed=st.integers(0, 10_000),
)
def test_setup_anndata_property(n, g, d, counts, sparse_x, nan_at, seed):
    import anndata as ad

    rng = np.random.default_rng(seed)
    X = (
        rng.poisson(3.0, size=(n, g)).astype(np.float32) + 1
        if counts
        else rng.lognormal(size=(n, g)).astype(np.float32)
    )
    coords = rng.normal(size=(n, d))
    if nan_at is not None:
        coords[nan_at % n, nan_at % d] = np.nan
    adata = ad.AnnData(sparse.csr_matrix(X) if sparse_x else X)
    adata.obsm["spatial"] = coords
    if nan_at is not None:
        with pytest.raises(ValueError, match="NaN or infinite coordinates"):
            sem.SpatialEDM.setup_anndata(adata)
        return
    sem.SpatialEDM.setup_anndata(adata)
    model = sem.SpatialEDM(adata, dim=8, n_hidden=16, n_latent=8, n_inducing=2, n_heads=2)
    assert model.module.n_spatial == d
    assert model.preprocessor_["is_counts"] == counts


def test_negative_values_with_declared_counts(small):
    X = np.asarray(small.X, dtype=np.float32).copy()
    X[2, 1] = -1
    small.X = X
    with pytest.raises(ValueError, match="declared as counts .* negative values"):
        sem.SpatialEDM.setup_anndata(small, expression="counts")


def test_non_integer_values_with_declared_counts(small):
    small.X = np.asarray(small.X, dtype=np.float32) + 0.5
    with pytest.raises(ValueError, match="non-integer values"):
        sem.SpatialEDM.setup_anndata(small, expression="counts")


def test_declared_log_expression_is_not_count_normalised(small):
    sem.SpatialEDM.setup_anndata(small, expression="log")
    assert not sem.SpatialEDM(small, dim=8, n_hidden=16, n_latent=8, n_inducing=2, n_heads=2).preprocessor_[
        "is_counts"
    ]
    with pytest.raises(ValueError, match="expression must be"):
        sem.SpatialEDM.setup_anndata(small, expression="raw")


def test_silent_genes_warn_with_names(small):
    X = np.asarray(small.X, dtype=np.float32).copy()
    X[:, 4] = 0
    small.X = X
    with pytest.warns(
        UserWarning, match=r"1 genes with no expression in any cell, e.g. \['g4'\]|1 genes with no expression"
    ):
        sem.SpatialEDM.setup_anndata(small)


def test_duplicated_obs_names(small):
    small.obs_names = ["c0"] * 2 + list(small.obs_names[2:])
    with pytest.raises(ValueError, match="obs_names has duplicates"):
        sem.SpatialEDM.setup_anndata(small)


def test_single_section_batch_key(small, tiny, tiny_sets):
    small.obs["section"] = "only"
    sem.SpatialEDM.setup_anndata(small, batch_key="section")
    model = sem.SpatialEDM(small, **tiny)
    model.train(max_epochs=3, accelerator="cpu", datasplitter_kwargs=tiny_sets, enable_progress_bar=False)
    assert np.isfinite(model.get_latent_coordinates(seed=0, key_added=None)).all()


def test_backed_reference_trains(tmp_path, tiny, tiny_sets):
    import anndata as ad

    adata = sem.datasets.synthetic_tissue(n_cells=200, n_genes=10, seed=0)
    adata.X = np.asarray(adata.X, dtype=np.float32)
    path = tmp_path / "ref.h5ad"
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    sem.SpatialEDM.setup_anndata(backed)
    model = sem.SpatialEDM(backed, **tiny)
    model.train(max_epochs=3, accelerator="cpu", datasplitter_kwargs=tiny_sets, enable_progress_bar=False)
    assert model.get_latent_coordinates(backed, seed=0, key_added=None).shape == (200, 2)


def test_zero_spatial_spread_in_a_section_is_refused(tissue):
    adata = tissue.copy()
    first = adata.obs["section"].astype(str).to_numpy() == adata.obs["section"].astype(str).iloc[0]
    adata.obsm["spatial"][first] = 5.0
    with pytest.raises(ValueError, match="all .* cells in section section=.* at one position"):
        sem.SpatialEDM.setup_anndata(adata, batch_key="section")
    single = tissue.copy()
    single.obsm["spatial"][:] = 0.0
    with pytest.raises(ValueError, match="at one position"):
        sem.SpatialEDM.setup_anndata(single)


def test_query_batch_with_nan_is_refused_naming_the_key(trained, tissue):
    query = tissue.copy()
    query.obs["section"] = query.obs["section"].astype(object)
    query.obs.iloc[3, query.obs.columns.get_loc("section")] = np.nan
    with pytest.raises(ValueError, match=r"obs\['section'\] has 1 missing values"):
        trained.get_latent_coordinates(query)


def test_negative_values_in_a_counts_layer_are_refused(tissue):
    adata = tissue.copy()
    adata.layers["counts"] = adata.X.copy()
    adata.layers["counts"][0, 0] = -1.0
    with pytest.raises(ValueError, match=r"layers\['counts'\] is declared as counts \(its name 'counts'\)"):
        sem.SpatialEDM.setup_anndata(adata, layer="counts")
    with pytest.raises(ValueError, match="expression='counts'"):
        sem.SpatialEDM.setup_anndata(adata, layer="counts", expression="counts")
    adata.layers["scaled"] = adata.layers["counts"]
    sem.SpatialEDM.setup_anndata(adata, layer="scaled", expression="log")  # declared log: accepted


def test_wide_panels_read_only_the_most_variable_genes(tiny, tiny_sets, tmp_path):
    adata = sem.datasets.synthetic_tissue(n_cells=200, n_genes=30, n_sections=2, seed=4)
    sem.SpatialEDM.setup_anndata(adata, batch_key="section")
    model = sem.SpatialEDM(adata, n_top_genes=12, **tiny)
    genes = model.preprocessor_["genes"]
    assert len(genes) == 12 and set(genes) <= set(adata.var_names)
    assert model.module.encoder.net[0].in_features == 12
    model.train(max_epochs=3, accelerator="cpu", datasplitter_kwargs=tiny_sets, enable_progress_bar=False)
    query = adata[:50].copy()
    coords = model.get_latent_coordinates(query, seed=0, key_added=None, prior=None)
    model.save(tmp_path / "m")
    loaded = sem.SpatialEDM.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.get_latent_coordinates(query, seed=0, key_added=None), coords)
    # loaded with its 30-gene reference (read afresh, as in a new session), the model gets it back
    fresh = sem.datasets.synthetic_tissue(n_cells=200, n_genes=30, n_sections=2, seed=4)
    with_reference = sem.SpatialEDM.load(tmp_path / "m", adata=fresh)
    assert with_reference.adata is not None and with_reference.adata.n_vars == 30
    np.testing.assert_array_equal(with_reference.validation_indices_, model.validation_indices_)
    np.testing.assert_array_equal(
        with_reference.get_latent_coordinates(query, seed=0, key_added=None, prior=None), coords
    )
    assert len(sem.SpatialEDM(adata, n_top_genes=None, **tiny).preprocessor_["genes"]) == 30
