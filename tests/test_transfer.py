from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.stats as ss
import scvi
import torch
from scipy import sparse

import spatialedm as sem


def _snapshot(adata):
    return (
        set(adata.obs.columns),
        set(adata.obsm.keys()),
        set(adata.uns.keys()),
        set(adata.layers.keys()),
        adata.X.copy(),
    )


def _query(n=60, seed=5, extra_gene=True):
    """Cells of the fixture's tissue (other seed), without coordinates, with a gene the reference lacks."""
    q = sem.datasets.synthetic_tissue(n_cells=n, n_genes=20, n_sections=1, dim=2, seed=seed)
    del q.obsm["spatial"]
    if extra_gene:
        extra = ad.AnnData(
            X=np.arange(q.n_obs, dtype=np.float32)[:, None] % 5,
            obs=pd.DataFrame(index=q.obs_names),
            var=pd.DataFrame(index=["novel_gene"]),
        )
        q = ad.concat([q, extra], axis=1, merge="first")
    return q


def test_project_genes_shapes_and_untouched(trained):
    query = _query()
    ref = trained.adata
    ref_before, q_before = _snapshot(ref), _snapshot(query)
    out = trained.project_genes(query, seed=0)
    assert out.shape == (ref.n_obs, query.n_vars)
    assert list(out.obs_names) == list(ref.obs_names)
    assert list(out.var_names) == list(query.var_names)
    np.testing.assert_array_equal(out.obsm["spatial"], ref.obsm["spatial"])
    # the gene the reference lacks is projected, and flagged as such
    assert "novel_gene" not in ref.var_names
    assert not out.var.loc["novel_gene", "in_reference"]
    assert out.var["in_reference"].sum() == 20
    novel = np.asarray(out[:, "novel_gene"].X).ravel()
    assert np.all(np.isfinite(novel)) and novel.min() >= 0 and novel.max() <= 4
    assert novel.std() > 0
    assert not any(c.startswith("_scvi") for c in out.obs.columns)
    assert set(out.uns["spatialedm_projection"]["alignment_error"]) == {"s0", "s1"}
    # neither AnnData is changed
    for before, after in ((ref_before, _snapshot(ref)), (q_before, _snapshot(query))):
        assert before[:4] == after[:4]
        np.testing.assert_array_equal(before[4], after[4])


def test_project_genes_subset_sparse_and_coords_key(trained):
    query = _query()
    query.X = sparse.csr_matrix(query.X)
    out = trained.project_genes(
        query, genes=["novel_gene", "gene_3"], k=5, seed=0, coords_key_added="aligned"
    )
    assert out.shape == (trained.adata.n_obs, 2)
    assert sparse.issparse(out.X)
    assert query.obsm["aligned"].shape == (query.n_obs, 2)
    # the aligned coordinates live in the reference's frame (its first section)
    ref = np.asarray(trained.adata.obsm["spatial"])[trained.adata.obs["section"].to_numpy() == "s0"]
    centre, spread = ref.mean(0), np.sqrt(((ref - ref.mean(0)) ** 2).sum(1).mean())
    dist = np.sqrt(((query.obsm["aligned"] - centre) ** 2).sum(1))
    assert np.median(dist) < 3 * spread


def test_project_genes_errors(trained):
    query = _query(extra_gene=False)
    with pytest.raises(KeyError, match="not_a_gene"):
        trained.project_genes(query, genes=["gene_1", "not_a_gene"])
    with pytest.raises(KeyError, match="layer 'nope'"):
        trained.project_genes(query, layer="nope")
    ref = trained.adata.copy()
    del ref.obsm["spatial"]
    with pytest.raises(KeyError, match="obsm\\['spatial'\\]"):
        trained.project_genes(query, reference=ref)


def test_reference_required_without_registered_adata(trained, tmp_path):
    trained.save(str(tmp_path / "m"), overwrite=True)
    loaded = sem.SpatialEDM.load(str(tmp_path / "m"))
    assert loaded.adata is None
    query = _query(extra_gene=False)
    with pytest.raises(ValueError, match="reference="):
        loaded.project_genes(query)
    with pytest.raises(ValueError, match="reference="):
        loaded.transfer_labels(query, "domain")
    # with an explicit reference it works
    probs = loaded.transfer_labels(query, "domain", reference=trained.adata, seed=0)
    assert probs.shape[0] == query.n_obs


def test_transfer_labels_writes_documented_keys(trained):
    query = _query(extra_gene=False)
    ref = trained.adata
    ref_before = _snapshot(ref)
    obs_before = set(query.obs.columns)
    probs = trained.transfer_labels(query, "domain", seed=0)
    assert set(query.obs.columns) - obs_before == {"domain_spatialedm", "domain_spatialedm_score"}
    assert list(probs.columns) == list(ref.obs["domain"].cat.categories)
    assert list(probs.index) == list(query.obs_names)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert query.obs["domain_spatialedm"].dtype.name == "category"
    np.testing.assert_allclose(query.obs["domain_spatialedm_score"], probs.max(1), atol=1e-6)
    assert (query.obs["domain_spatialedm"].astype(str).to_numpy() == probs.idxmax(1).to_numpy()).all()
    after = _snapshot(ref)
    assert ref_before[:4] == after[:4]
    # custom key, true reference positions
    trained.transfer_labels(query, "cell_type", key_added="ct", seed=0, reference_positions="true")
    assert {"ct", "ct_score"} <= set(query.obs.columns)


def test_transfer_labels_errors(trained):
    query = _query(extra_gene=False)
    with pytest.raises(KeyError, match="labels_key 'nope'"):
        trained.transfer_labels(query, "nope")
    with pytest.raises(ValueError, match="reference_positions"):
        trained.transfer_labels(query, "domain", reference_positions="guess")
    ref = trained.adata.copy()
    ref.obs["empty"] = pd.Categorical([None] * ref.n_obs, categories=["a"])
    with pytest.raises(ValueError, match="no labels"):
        trained.transfer_labels(query, "empty", reference=ref)


@pytest.fixture(scope="module")
def held_out(tiny, tiny_sets):
    """A model trained on 70% of a synthetic tissue; the other 30% are the query (no coordinates)."""
    torch.manual_seed(0)
    np.random.seed(0)
    scvi.settings.seed = 0
    adata = sem.datasets.synthetic_tissue(n_cells=500, n_genes=20, n_sections=1, dim=2, seed=4)
    # a purely spatial label: the side of the tissue along its layered axis
    side = np.asarray(adata.obsm["spatial_canonical"])[:, 0] < 0.5
    adata.obs["side"] = pd.Categorical(np.where(side, "low", "high"))
    is_query = np.random.default_rng(0).random(adata.n_obs) < 0.3
    ref, query = adata[~is_query].copy(), adata[is_query].copy()
    del query.obsm["spatial"]
    sem.SpatialEDM.setup_anndata(ref, spatial_key="spatial")
    model = sem.SpatialEDM(ref, **tiny)
    model.train(
        max_epochs=20,
        accelerator="cpu",
        datasplitter_kwargs={**tiny_sets, "n_sets_per_epoch": 16},
        enable_progress_bar=False,
    )
    return model, ref, query


def _lognorm(x):
    x = np.asarray(x, dtype=float)
    return np.log1p(x / x.sum(1, keepdims=True) * 1e4)


@pytest.mark.parametrize("positions", ["reconstructed", "true"])
def test_projection_beats_shuffled_control(held_out, positions):
    model, ref, query = held_out
    query = query.copy()
    query.X = _lognorm(query.X)  # project log-normalised values
    out = model.project_genes(query, seed=0, reference_positions=positions)
    truth, pred = _lognorm(ref.X), np.asarray(out.X)
    # spatially patterned genes: those correlated with position in the reference
    xy = np.asarray(ref.obsm["spatial_canonical"])
    pattern = np.array(
        [max(abs(ss.spearmanr(truth[:, g], xy[:, a])[0]) for a in range(2)) for g in range(ref.n_vars)]
    )
    genes = np.argsort(pattern)[-5:]
    assert pattern[genes].min() > 0.2
    cor = np.mean([ss.pearsonr(pred[:, g], truth[:, g])[0] for g in genes])
    perm = np.random.default_rng(1).permutation(ref.n_obs)
    shuffled = np.mean([ss.pearsonr(pred[perm, g], truth[:, g])[0] for g in genes])
    assert cor > 0.12, cor
    assert cor > shuffled + 0.1, (cor, shuffled)


@pytest.mark.parametrize("positions", ["reconstructed", "true"])
def test_transferred_labels_beat_chance(held_out, positions):
    model, ref, query = held_out
    query = query.copy()
    model.transfer_labels(query, "side", seed=0, reference_positions=positions)
    truth = query.obs["side"].astype(str).to_numpy()
    acc = np.mean(query.obs["side_spatialedm"].astype(str).to_numpy() == truth)
    freq = ref.obs["side"].value_counts(normalize=True)
    chance = float((freq**2).sum())  # expected accuracy of labels drawn from the reference's frequencies
    assert acc > chance + 0.08, (acc, chance)
