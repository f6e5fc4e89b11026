from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from benchmarks import tasks
from benchmarks.tasks import (
    available_tasks,
    load_task,
    split_end_slab,
    split_halves,
    split_random,
    split_section,
)

from spatialedm.datasets import synthetic_tissue


def _layered(n=1200, n_genes=15, angle_deg=30.0, seed=0):
    """A layered square: expression depends on depth (u[:, 0]) only, including a middle-layer gene;
    coordinates are rotated by ``angle_deg`` so the layer normal is (cos, sin) of that angle."""
    rng = np.random.default_rng(seed)
    u = rng.random((n, 2))
    depth = u[:, 0]
    layer = np.minimum((depth * 4).astype(int), 3)
    profiles = rng.normal(0, 1.0, size=(4, n_genes))
    profiles[:, 0] = [0, 3, 0, 0]  # non-monotonic marker of layer 2
    mu = np.exp(1.0 + profiles[layer])
    adata = ad.AnnData(rng.poisson(mu).astype(np.float32))
    adata.obs_names = [f"c{i}" for i in range(n)]
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    t = np.radians(angle_deg)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    adata.obsm["spatial"] = (u - 0.5) @ rot * 500.0 + 100.0
    adata.obs["depth"] = depth
    return adata, np.array([np.cos(t), np.sin(t)])


def _check_partition(adata, ref, query):
    assert set(ref.obs_names).isdisjoint(query.obs_names)
    assert set(ref.obs_names) | set(query.obs_names) == set(adata.obs_names)
    assert ref.n_obs + query.n_obs == adata.n_obs
    assert ref.uns["task"]["part"] == "reference" and query.uns["task"]["part"] == "query"
    assert "description" in ref.uns["task"]


def test_split_random():
    adata = synthetic_tissue(n_cells=500, n_genes=10, seed=0)
    ref, query = split_random(adata, fraction=0.3, seed=1)
    _check_partition(adata, ref, query)
    assert query.n_obs == 150
    ref2, query2 = split_random(adata, fraction=0.3, seed=1)
    assert list(query2.obs_names) == list(query.obs_names)
    _, query3 = split_random(adata, fraction=0.3, seed=2)
    assert list(query3.obs_names) != list(query.obs_names)
    # copies, not views
    query.obsm["spatial"][:] = 0
    assert np.abs(adata.obsm["spatial"]).sum() > 0
    with pytest.raises(ValueError, match="fraction"):
        split_random(adata, fraction=1.0)


@pytest.mark.parametrize("dim", [2, 3])
def test_split_end_slab(dim):
    adata = synthetic_tissue(n_cells=600, n_genes=10, dim=dim, seed=0)
    adata.obsm["spatial"][:, 0] *= 5.0  # make axis 0 (of the section frame) the long axis
    ref, query = split_end_slab(adata, fraction=0.25)
    _check_partition(adata, ref, query)
    assert query.n_obs == 150
    axis = np.asarray(ref.uns["task"]["long_axis"])
    centre = adata.obsm["spatial"].mean(0)
    assert np.abs(axis[0]) > 0.95
    proj_ref = (ref.obsm["spatial"] - centre) @ axis
    proj_query = (query.obsm["spatial"] - centre) @ axis
    assert proj_query.min() >= proj_ref.max()


def test_split_section():
    adata = synthetic_tissue(n_cells=600, n_genes=10, n_sections=3, seed=0)
    ref, query = split_section(adata)
    _check_partition(adata, ref, query)
    assert query.obs["section"].unique().tolist() == ["s2"]
    assert sorted(ref.obs["section"].unique().tolist()) == ["s0", "s1"]
    assert list(query.obs["section"].cat.categories) == ["s2"]
    ref, query = split_section(adata, section="s0")
    assert query.obs["section"].unique().tolist() == ["s0"]
    with pytest.raises(ValueError, match="not in"):
        split_section(adata, section="s9")
    with pytest.raises(ValueError, match="at least 2"):
        split_section(synthetic_tissue(n_cells=100, n_genes=5, seed=0))
    plain = adata.copy()
    plain.obs["section"] = plain.obs["section"].astype(str)
    _, query = split_section(plain)
    assert query.obs["section"].unique().tolist() == ["s2"]


@pytest.mark.parametrize("angle", [0.0, 30.0, 115.0])
def test_split_halves_cuts_across_layers(angle):
    adata, normal = _layered(angle_deg=angle)
    ref, query = split_halves(adata)
    _check_partition(adata, ref, query)
    assert abs(ref.n_obs - query.n_obs) <= 1
    gradient = np.asarray(ref.uns["task"]["gradient"])
    assert abs(gradient @ normal) > 0.97  # within ~14 degrees of the true layer normal
    # each half contains both ends of the gradient (all layers)
    for part in (ref, query):
        depth = part.obs["depth"].to_numpy()
        assert depth.min() < 0.05 and depth.max() > 0.95
        assert np.histogram(depth, bins=4, range=(0, 1))[0].min() > 0.15 * part.n_obs
    # the reference is the half with the lower projection on the cut direction
    cut = np.asarray(ref.uns["task"]["cut_direction"])
    centre = adata.obsm["spatial"].mean(0)
    assert ((ref.obsm["spatial"] - centre) @ cut).max() <= ((query.obsm["spatial"] - centre) @ cut).min()


def test_split_halves_explicit_axis():
    adata, _ = _layered(angle_deg=0.0)
    ref, query = split_halves(adata, axis=0)
    np.testing.assert_allclose(ref.uns["task"]["cut_direction"], [0.0, 1.0], atol=1e-12)
    ref2, _ = split_halves(adata, axis=np.array([2.0, 0.0]))
    assert list(ref2.obs_names) == list(ref.obs_names)
    with pytest.raises(ValueError, match="non-zero"):
        split_halves(adata, axis=np.zeros(2))


def test_split_halves_3d():
    adata = synthetic_tissue(n_cells=800, n_genes=20, dim=3, seed=0)
    adata.obsm["spatial"] = adata.obsm["spatial_canonical"]
    ref, query = split_halves(adata)
    _check_partition(adata, ref, query)
    gradient = np.asarray(ref.uns["task"]["gradient"])
    assert abs(gradient @ np.asarray(ref.uns["task"]["cut_direction"])) < 1e-8


def test_load_task_shipped():
    assert {"osmfish_halves", "embryo_slab"} <= set(available_tasks())
    ref, query, info = load_task("embryo_slab")
    assert info["dim"] == 3 and info["batch_key"] is None and info["layer"] is None
    assert ref.n_obs + query.n_obs == 3039
    assert query.uns["task"]["task_name"] == "embryo_slab"
    ref, query, info = load_task("osmfish_halves")
    assert info["dim"] == 2
    assert ref.n_obs + query.n_obs == 3089  # exact duplicate rows dropped
    _, q0, _ = load_task("osmfish_random", seed=0)
    _, q1, _ = load_task("osmfish_random", seed=1)
    assert list(q0.obs_names) != list(q1.obs_names)
    with pytest.raises(ValueError, match="Unknown task"):
        load_task("nope")


def test_shared_data_location(tmp_path, monkeypatch):
    monkeypatch.setenv(tasks.SHARED_DATA_ENV, str(tmp_path))
    assert tasks.shared_data_dir() == tmp_path
    assert not {"starmap_section", "dlpfc_section", "merfish_section"} & set(available_tasks())
    with pytest.raises(FileNotFoundError, match=tasks.SHARED_DATA_ENV):
        load_task("starmap_section")
    # a small stand-in file is picked up
    adata = synthetic_tissue(n_cells=300, n_genes=10, n_sections=3, seed=0)
    adata.obs["section"] = pd.Categorical(adata.obs["section"].astype(str))
    del adata.obsm["spatial_canonical"]
    adata.write_h5ad(tmp_path / "starmap_mpfc.h5ad")
    assert "starmap_section" in available_tasks()
    ref, query, info = load_task("starmap_section")
    assert info["batch_key"] == "section"
    assert query.obs["section"].unique().tolist() == ["s2"]
    monkeypatch.delenv(tasks.SHARED_DATA_ENV)
    monkeypatch.chdir(tmp_path)
    assert tasks.shared_data_dir() == tmp_path.resolve().parent / "shared" / "data"


def test_cells_onto_spots_pools_the_reference_and_keeps_the_query_cells():
    cells_ref, cells_query, _ = load_task("osmfish_halves")
    ref, query, info = load_task("osmfish_spots")
    assert info["base"] == "osmfish_halves" and query.uns["task"]["task_name"] == "osmfish_spots"
    # the query is the base task's single cells, the reference its cells pooled into ~8-cell spots
    assert list(query.obs_names) == list(cells_query.obs_names)
    assert 6 <= cells_ref.n_obs / ref.n_obs <= 10
    assert ref.obs["n_cells"].sum() == cells_ref.n_obs
    np.testing.assert_allclose(ref.X.sum(), cells_ref.X.sum(), rtol=1e-6)


def test_platform_shift_thins_the_query_gene_by_gene():
    ratios = tasks.capture_log2_ratios()
    assert len(ratios) == 33 and abs(ratios.mean()) < 1e-9 and ratios.std() > 1
    base_ref, base_query, _ = load_task("osmfish_halves")
    ref, query, _ = load_task("osmfish_shift", seed=0)
    assert ref.n_obs == base_ref.n_obs  # the reference is untouched
    before = base_query[query.obs_names].X
    after = query.X
    before = np.asarray(before.toarray() if hasattr(before, "toarray") else before)
    after = np.asarray(after.toarray() if hasattr(after, "toarray") else after)
    assert (after <= before).all() and after.sum() < before.sum()
    # a gene's kept fraction follows its capture factor: the best-captured genes keep about all counts
    kept = after.sum(0) / np.maximum(before.sum(0), 1)
    expected = np.minimum(
        1.0, tasks.SHIFT_DEPTH * 2.0 ** ratios.clip(-3, 3).reindex(query.var_names).to_numpy()
    )
    np.testing.assert_allclose(kept, expected, atol=0.05)
    _, other, _ = load_task("osmfish_shift", seed=1)
    assert not np.array_equal(np.asarray(other.X.sum(0)).ravel(), after.sum(0))
