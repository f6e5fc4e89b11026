"""diagnostics.diagnose / sampling_probe (also model methods) and the ideal gauge denoiser."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import spatialedm as sem
from spatialedm.diagnostics import ideal_gauge_denoiser, orthogonal_grid
from spatialedm.metrics import scale_ratio


@pytest.mark.parametrize("d", [2, 3])
def test_orthogonal_grid_is_orthogonal_with_both_determinants(d):
    grid = orthogonal_grid(d)
    eye = np.einsum("kij,kil->kjl", grid, grid)
    assert np.allclose(eye, np.eye(d), atol=1e-8)
    det = np.linalg.det(grid)
    assert np.isclose((det > 0).mean(), 0.5)


def test_ideal_gauge_denoiser_shrinks_with_sigma():
    # DESIGN.md decision 3: n = 64 points, only the O(2) orientation unknown; the RMS ratio of the
    # posterior mean falls from ~1 at small sigma towards 0 at large sigma.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2))
    x -= x.mean(0)
    x /= np.sqrt((x**2).mean())
    ratios = []
    for sigma in (0.1, 1.0, 3.0, 10.0):
        r = np.mean(
            [
                scale_ratio(ideal_gauge_denoiser(x, x + sigma * rng.normal(size=x.shape), sigma), x)
                for _ in range(20)
            ]
        )
        ratios.append(r)
    assert ratios[0] > 0.99
    assert all(a > b for a, b in zip(ratios, ratios[1:]))
    assert ratios[-1] < 0.5


def test_ideal_gauge_denoiser_recovers_rotated_shape():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    x -= x.mean(0)
    rot = sem.geometry.random_orthogonal(1, 3).numpy()[0].astype(np.float64)
    noisy = x @ rot + 0.01 * rng.normal(size=x.shape)
    est = ideal_gauge_denoiser(x, noisy, 0.01)
    # the posterior mean is the shape in the noisy layout's orientation (up to the 3-D grid spacing)
    assert np.sqrt(((est - x @ rot) ** 2).mean()) < 0.2 * np.sqrt((x**2).mean())


def test_diagnose_table(trained):
    df = trained.diagnose(sigmas=[0.1, 1.0, 8.0], n_sets=2, seed=0)
    assert list(df["sigma_over_data"]) == [0.1, 1.0, 8.0]
    np.testing.assert_allclose(
        df["sigma"], df["sigma_over_data"] * float(trained.module.sigma_data), rtol=1e-6
    )
    for col in ("scale_ratio", "patch_jaccard", "distance_spearman"):
        assert {f"{col}_output", f"{col}_input", f"{col}_output_std"} <= set(df.columns)
    assert {"scale_ratio_ideal", "fx_ratio_output", "residual_scale_ratio_output"} <= set(df.columns)
    assert np.isfinite(df.drop(columns=["n_sets"]).to_numpy()).all()
    # noise inflates the noisy layout; the ideal curve does not grow
    assert df["scale_ratio_input"].is_monotonic_increasing
    assert df["scale_ratio_ideal"].iloc[0] > 0.98
    # same sets at every sigma: the input's neighbourhoods degrade as sigma grows
    assert df["patch_jaccard_input"].iloc[0] > df["patch_jaccard_input"].iloc[-1]
    # a trained refiner outputs something: a zeroed network gives fx_ratio 0 at every sigma
    assert (df["fx_ratio_output"] > 1e-3).all()


def test_diagnose_detects_a_zero_refiner(trained):
    import copy

    import torch

    model = copy.deepcopy(trained)
    head = model.module.denoiser.head[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    df = sem.diagnostics.diagnose(model, sigmas=[1.0], n_sets=2, seed=0)
    assert (df["fx_ratio_output"] == 0).all()


def test_diagnose_uses_the_stored_held_out_block(trained, tmp_path):
    held_out = np.asarray(trained.validation_indices_)
    assert len(held_out) >= 2
    sets = sem.diagnostics._diagnostic_sets(trained, None, None, 3, np.random.default_rng(0))
    expression = trained.expression_view(None).all_rows()
    for expr, _ in sets:  # every set's cells are rows of the held-out block
        rows = [np.flatnonzero((expression == e).all(1)) for e in expr]
        assert all(len(r) and np.isin(r, held_out).any() for r in rows)
    trained.save(tmp_path / "m")
    loaded = sem.SpatialEDM.load(tmp_path / "m", adata=trained.adata)
    np.testing.assert_array_equal(np.asarray(loaded.validation_indices_), held_out)
    pd.testing.assert_frame_equal(
        loaded.diagnose(sigmas=[1.0], n_sets=2, seed=0), trained.diagnose(sigmas=[1.0], n_sets=2, seed=0)
    )


def test_diagnose_on_given_adata_and_errors(trained):
    adata = trained.adata
    df = trained.diagnose(adata, sigmas=[1.0], n_sets=2, seed=1)
    assert len(df) == 1
    with pytest.raises(KeyError, match="nope"):
        trained.diagnose(adata, spatial_key="nope", n_sets=1)
    with pytest.raises(ValueError, match="sigmas"):
        trained.diagnose(sigmas=[-1.0], n_sets=1)
    assert "X_spatialedm" not in adata.obsm  # nothing written


def test_sampling_probe(trained):
    df = trained.sampling_probe(sigma_starts=(1.0,), n_steps=1, n_sets=2, seed=0)
    assert list(df["start"]) == ["generator", "deterministic", "stochastic"]
    for col in ("cellwise_spearman", "patch_jaccard", "scale_ratio"):
        assert np.isfinite(df[col]).all()


def test_study_options_are_gone():
    with pytest.raises(TypeError, match="refiner_target"):
        sem.ModelConfig.from_kwargs(refiner_target="layout")
