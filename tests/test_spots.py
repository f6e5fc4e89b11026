from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from spatialedm.datasets import pool_spots


def _cells(n=400, seed=0, n_sections=2, sparse_x=False):
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0, size=(n, 5)).astype(np.float32)
    a = ad.AnnData(sparse.csr_matrix(X) if sparse_x else X)
    a.var_names = [f"g{i}" for i in range(5)]
    a.obsm["spatial"] = rng.uniform(0, 100, size=(n, 2))
    a.obs["section"] = pd.Categorical(np.repeat([f"s{i}" for i in range(n_sections)], n // n_sections))
    a.obs["type"] = np.where(a.obsm["spatial"][:, 0] > 50, "right", "left")
    return a


@pytest.mark.parametrize("sparse_x", [False, True])
def test_counts_are_summed_and_positions_are_square_centres(sparse_x):
    cells = _cells(sparse_x=sparse_x)
    spots = pool_spots(cells, cells_per_spot=8, batch_key="section", labels_key="type")
    assign = spots.uns["pool_spots"]["cell_spot"]
    X = cells.X.toarray() if sparse_x else cells.X
    Y = spots.X.toarray() if sparse.issparse(spots.X) else spots.X
    # every spot is the sum of its cells; no count is lost or counted twice
    for s in range(0, spots.n_obs, 7):
        np.testing.assert_allclose(Y[s], X[assign == s].sum(0), rtol=1e-6)
    np.testing.assert_allclose(Y.sum(), X.sum(), rtol=1e-6)
    assert spots.obs["n_cells"].sum() == cells.n_obs
    # the mean occupancy of the non-empty squares is what was asked for
    assert abs(spots.obs["n_cells"].mean() - 8) < 1.0
    # each cell lies within half a grid side of its spot's centre, in its own section only
    for section in ("s0", "s1"):
        in_section = (cells.obs["section"] == section).to_numpy()
        assert set(spots.obs["section"].astype(str)[np.unique(assign[in_section])]) == {section}
    d = np.abs(cells.obsm["spatial"] - spots.obsm["spatial"][assign])
    side = 2 * d.max()
    assert side < 100 / np.sqrt(200 / 8) * 2
    assert spots.obs["type"].isin(["left", "right"]).all()
    assert ((spots.obs["type_purity"] > 0) & (spots.obs["type_purity"] <= 1)).all()


def test_the_layer_is_summed_into_x_and_the_layer():
    cells = _cells()
    cells.layers["counts"] = cells.X.copy()
    cells.X = np.log1p(cells.X)
    spots = pool_spots(cells, cells_per_spot=5, layer="counts")
    np.testing.assert_allclose(spots.layers["counts"], spots.X)
    np.testing.assert_allclose(spots.X.sum(), cells.layers["counts"].sum(), rtol=1e-6)


def test_one_cell_per_spot_keeps_every_cell_and_the_input_is_unchanged():
    cells = _cells(n=50, n_sections=1)
    before = cells.copy()
    spots = pool_spots(cells, cells_per_spot=1)
    assert spots.n_obs >= 45  # a fine grid leaves almost every cell alone
    np.testing.assert_array_equal(cells.X, before.X)
    assert list(cells.obs.columns) == list(before.obs.columns)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cells_per_spot": 0.5}, ValueError, "cells_per_spot"),
        ({"spatial_key": "xy"}, KeyError, "xy"),
        ({"batch_key": "slide"}, KeyError, "slide"),
        ({"layer": "raw"}, KeyError, "raw"),
        ({"labels_key": "celltype"}, KeyError, "celltype"),
    ],
)
def test_bad_arguments_name_the_offending_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        pool_spots(_cells(), **kwargs)
