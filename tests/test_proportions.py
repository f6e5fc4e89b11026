"""Tissue proportions: the reference's variance shares per principal axis, and layouts moved towards them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spatialedm as sem
from spatialedm._proportions import (
    MAX_STRETCH,
    check_shape_weight,
    match_proportions,
    stretch_to_proportions,
    tissue_proportions,
)
from spatialedm.geometry import unit_rms


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _shares(x: np.ndarray) -> np.ndarray:
    values = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    return values / values.sum()


@pytest.fixture
def rectangle():
    """A 4:1 rectangle of uniform points: variances 16:1."""
    return np.random.default_rng(0).uniform(size=(3000, 2)) * [4.0, 1.0]


def test_proportions_of_a_rectangle_in_any_frame(rectangle):
    shares = tissue_proportions(rectangle)
    np.testing.assert_allclose(shares, [16 / 17, 1 / 17], atol=0.01)
    assert shares.sum() == pytest.approx(1.0)
    # rotation, scale and offset of a section change nothing
    np.testing.assert_allclose(tissue_proportions(rectangle @ _rotation(0.7) * 30.0 + 5.0), shares, atol=1e-9)


def test_proportions_are_measured_per_section(rectangle):
    square = np.random.default_rng(1).uniform(size=(3000, 2))
    other = rectangle @ _rotation(1.3) + 100.0  # the same shape, rotated, far away
    groups = np.repeat([0, 1], 3000)
    # per section, the two rectangles agree; pooled, the cross of both is nearly round
    np.testing.assert_allclose(
        tissue_proportions(np.vstack([rectangle, other]), groups), tissue_proportions(rectangle), atol=1e-9
    )
    assert tissue_proportions(np.vstack([rectangle, other]))[0] > 0.99  # dominated by the offset
    # three sections: the median share per axis
    three = tissue_proportions(np.vstack([rectangle, other, square]), np.repeat([0, 1, 2], 3000))
    np.testing.assert_allclose(three, tissue_proportions(rectangle), atol=1e-9)


def test_proportions_of_degenerate_sections_are_zero():
    assert (tissue_proportions(np.zeros((10, 2))) == 0).all()
    assert (tissue_proportions(np.ones((2, 3))) == 0).all()  # fewer cells than dimensions + 1
    assert tissue_proportions(np.random.default_rng(0).normal(size=(50, 3))).shape == (3,)


def test_a_band_takes_the_target_proportions(rectangle):
    band = np.random.default_rng(2).normal(size=(2000, 2)) * [5.0, 0.3] @ _rotation(0.4)
    target = tissue_proportions(rectangle)
    out = match_proportions(band, target)
    np.testing.assert_allclose(_shares(out), target, atol=1e-6)
    # centred, unit per-axis RMS, and the band's long axis stays its long axis
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    assert np.sqrt((out**2).mean()) == pytest.approx(1.0)
    long_before = np.linalg.eigh(np.cov(band.T))[1][:, -1]
    long_after = np.linalg.eigh(np.cov(out.T))[1][:, -1]
    assert abs(long_before @ long_after) == pytest.approx(1.0, abs=1e-6)


def test_weight_moves_halfway_on_a_log_scale():
    band = np.random.default_rng(3).normal(size=(2000, 2)) * [4.0, 1.0]
    before = _shares(band)
    half = _shares(match_proportions(band, np.array([0.5, 0.5]), weight=0.5))
    # the ratio of the axes' variances goes from 16 to 4 (its square root)
    assert half[0] / half[1] == pytest.approx(np.sqrt(before[0] / before[1]), rel=1e-6)
    # weight 0 (and unmeasured proportions) only normalise
    np.testing.assert_allclose(match_proportions(band, np.array([0.5, 0.5]), weight=0.0), unit_rms(band))
    zero = match_proportions(band, np.zeros(2))
    np.testing.assert_allclose(_shares(zero), before, atol=1e-9)


def test_rotating_the_layout_rotates_the_result():
    band = np.random.default_rng(4).normal(size=(500, 2)) * [3.0, 1.0]
    rot = _rotation(2.1)
    target = np.array([0.6, 0.4])
    np.testing.assert_allclose(
        match_proportions(band @ rot, target), match_proportions(band, target) @ rot, atol=1e-9
    )


def test_an_almost_flat_layout_is_stretched_at_most_max_stretch():
    rng = np.random.default_rng(5)
    line = np.c_[rng.normal(size=400), 1e-6 * rng.normal(size=400)]
    out = match_proportions(line, np.array([0.5, 0.5]))
    ratio = np.sqrt(_shares(out)[1] / _shares(out)[0]) / np.sqrt(_shares(line)[1] / _shares(line)[0])
    assert ratio == pytest.approx(MAX_STRETCH, rel=1e-3)


def test_a_flat_axis_of_the_tissue_is_squeezed_to_the_bound():
    # a section stored with a constant z: its shares are (a, b, 0); the layout's third axis is squeezed
    # to 1/MAX_STRETCH of the longest (not left as it is), and the other two take the a:b ratio
    rng = np.random.default_rng(8)
    flat = np.c_[rng.uniform(size=(3000, 2)) * [2.0, 1.0], np.zeros(3000)]
    target = tissue_proportions(flat)
    assert target[2] == 0
    out = match_proportions(rng.normal(size=(3000, 3)), target)
    shares = _shares(out)
    assert shares[0] / shares[1] == pytest.approx(target[0] / target[1], rel=1e-6)
    assert np.sqrt(shares[0] / shares[2]) == pytest.approx(MAX_STRETCH, rel=1e-6)


def test_bad_inputs_are_refused():
    x = np.random.default_rng(6).normal(size=(50, 2))
    with pytest.raises(ValueError, match=r"proportions.*\(2,\)"):
        match_proportions(x, np.array([0.5, 0.3, 0.2]))
    with pytest.raises(ValueError, match="weight"):
        match_proportions(x, np.array([0.5, 0.5]), weight=1.5)
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="shape_weight"):
            check_shape_weight(bad, np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="adata=reference"):
        check_shape_weight(0.5, np.zeros(2))
    assert check_shape_weight(0.0, np.zeros(2)) == 0.0


# --- on the model ------------------------------------------------------------------------------------


@pytest.fixture
def query(tissue):
    q = tissue.copy()
    truth = np.asarray(q.obsm.pop("spatial"), dtype=float)
    return q, truth


def test_model_measures_its_reference_proportions(trained):
    ref = trained.adata
    expected = tissue_proportions(ref.obsm["spatial"], ref.obs["section"].to_numpy())
    np.testing.assert_allclose(trained.module.proportions.numpy(), expected, rtol=1e-6)


def test_shape_weight_gives_the_layout_the_reference_proportions(trained, query):
    q, _ = query
    default = trained.get_latent_coordinates(q, seed=0, key_added=None, uncertainty=None)
    off = trained.get_latent_coordinates(q, seed=0, key_added=None, uncertainty=None, shape_weight=0.0)
    np.testing.assert_array_equal(off, default)
    shaped = trained.get_latent_coordinates(
        q, seed=0, key_added=None, uncertainty=None, shape_weight=1.0, relax=False
    )
    np.testing.assert_allclose(_shares(shaped), trained.module.proportions.numpy(), atol=1e-5)
    # relaxed afterwards as usual: the proportions stay close
    relaxed = trained.get_latent_coordinates(q, seed=0, key_added=None, uncertainty=None, shape_weight=1.0)
    np.testing.assert_allclose(_shares(relaxed), trained.module.proportions.numpy(), atol=0.05)


def test_bad_shape_weight_is_refused_before_anything_is_written(trained, query):
    q, _ = query
    with pytest.raises(ValueError, match="shape_weight"):
        trained.get_latent_coordinates(q, seed=0, shape_weight=2.0)
    assert "X_spatialedm" not in q.obsm


def test_sets_are_stretched_one_by_one_and_padding_stays_zero():
    rng = np.random.default_rng(7)
    x = torch.zeros(2, 50, 2, dtype=torch.float64)
    mask = torch.zeros(2, 50, dtype=torch.bool)
    x[0, :50] = torch.from_numpy(rng.normal(size=(50, 2)) * [4.0, 1.0] + 3.0)
    x[1, :30] = torch.from_numpy(rng.normal(size=(30, 2)) * [1.0, 2.0] @ _rotation(0.3))
    mask[0, :50], mask[1, :30] = True, True
    targets = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    out = stretch_to_proportions(x, mask, targets)
    assert (out[1, 30:] == 0).all()
    for b, n in ((0, 50), (1, 30)):
        y = out[b, :n].numpy()
        np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_allclose(_shares(y), targets[b].numpy(), atol=1e-9)
        # each set keeps its RMS about its centre
        before = x[b, :n].numpy() - x[b, :n].numpy().mean(axis=0)
        assert np.sqrt((y**2).mean()) == pytest.approx(np.sqrt((before**2).mean()))
    # one target for every set broadcasts
    same = stretch_to_proportions(x, mask, targets[0])
    np.testing.assert_allclose(_shares(same[1, :30].numpy()), [0.5, 0.5], atol=1e-9)


@pytest.fixture(scope="module")
def stretched(tiny, tiny_sets):
    """A tiny model whose refiner is trained on generator layouts stretched to the tissue's proportions."""
    adata = sem.datasets.synthetic_tissue(n_cells=300, n_genes=20, n_sections=2, dim=2, seed=2)
    sem.SpatialEDM.setup_anndata(adata, spatial_key="spatial", batch_key="section")
    model = sem.SpatialEDM(adata, stretch_generator=True, **tiny)
    model.train(max_epochs=3, accelerator="cpu", datasplitter_kwargs=tiny_sets, enable_progress_bar=False)
    return model


def test_stretch_generator_is_off_by_default(trained):
    assert trained.module.config.stretch_generator is False


def test_refiner_reads_the_generator_layout_at_the_reference_proportions(stretched, query, monkeypatch):
    q, _ = query
    trained = stretched
    module = trained.module
    seen = []
    real = module.denoise

    def spy(x, sigma, v_gen, h, mask):
        seen.append(v_gen[mask].double().numpy())
        return real(x, sigma, v_gen, h, mask)

    monkeypatch.setattr(module, "denoise", spy)
    trained.get_latent_coordinates(q, seed=0, key_added=None, uncertainty=None, set_size=q.n_obs)
    np.testing.assert_allclose(_shares(seen[0]), module.proportions.numpy(), atol=1e-5)


def test_refiner_trains_on_the_generator_layout_at_each_sets_own_proportions(stretched):
    module = stretched.module
    rng = np.random.default_rng(8)
    coords = torch.from_numpy(rng.normal(size=(2, 40, 2)) * [3.0, 1.0]).float()
    mask = torch.ones(2, 40, dtype=torch.bool)
    v_gen = torch.from_numpy(rng.normal(size=(2, 40, 2)) * [1.0, 0.2]).float()
    h = torch.zeros(2, 40, module.config.dim)
    seen = []
    real = module.denoise
    module.denoise = lambda x, sigma, v, hh, m: seen.append(v.double().numpy()) or real(x, sigma, v, hh, m)
    try:
        module.eval()
        module.generative(h, v_gen, coords, mask, stage="refiner")
    finally:
        del module.denoise
    for b in range(2):
        np.testing.assert_allclose(_shares(seen[0][b]), _shares(coords[b].double().numpy()), atol=1e-5)


def test_stretch_generator_is_saved_with_the_model(stretched, query, tmp_path):
    q, _ = query
    stretched.save(tmp_path / "m")
    loaded = sem.SpatialEDM.load(tmp_path / "m")
    assert loaded.module.config.stretch_generator is True
    np.testing.assert_array_equal(
        loaded.get_latent_coordinates(q, seed=0, key_added=None, uncertainty=None),
        stretched.get_latent_coordinates(q, seed=0, key_added=None, uncertainty=None, prior=None),
    )


def test_shape_weight_applies_to_the_consensus_layout_too(trained, query):
    q, _ = query
    out = trained.get_latent_coordinates(
        q,
        seed=0,
        key_added=None,
        n_samples=3,
        consensus=True,
        uncertainty="samples",
        shape_weight=1.0,
        relax=False,
    )
    np.testing.assert_allclose(_shares(out), trained.module.proportions.numpy(), atol=1e-5)
