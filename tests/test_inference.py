"""Placement machinery: stitching of large queries, chunked reading, consensus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spatialedm as sem
from spatialedm import _inference, _preprocessing
from spatialedm._inference import ArrayRows, LayoutPredictor
from spatialedm.metrics import cellwise_spearman, procrustes_disparity


class TruthModule:
    """Stands in for the network: returns each set's TRUE layout, moved by a random similarity.

    The rows a set is given are the cells' true coordinates (2 columns), so a correct stitching of the
    sets must give back the whole true layout up to one similarity transform.
    """

    spacing = torch.tensor(0.0)  # no measured spacing: layouts are not relaxed, stitching is tested alone

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def eval(self):
        return self

    def sample(self, x, mask, generator=None, stochastic=False, **kwargs):
        out = torch.zeros(x.shape[0], x.shape[1], 2, dtype=torch.float64)
        for b in range(x.shape[0]):
            n = int(mask[b].sum())
            q, _ = np.linalg.qr(self.rng.normal(size=(2, 2)))
            pts = x[b, :n, :2].double().numpy()
            out[b, :n] = torch.from_numpy((pts - pts.mean(0)) @ q * self.rng.uniform(0.3, 3.0))
        return out


@pytest.fixture
def layout():
    return np.random.default_rng(0).uniform(size=(2000, 2)) * [4.0, 1.0]


@pytest.mark.parametrize("set_size", [2000, 300, 129])
def test_stitching_recovers_the_whole_layout(layout, set_size):
    predictor = LayoutPredictor(TruthModule(), "cpu", set_size)
    out, _ = predictor.predict(ArrayRows(layout), seed=0, uncertainty=None)
    assert procrustes_disparity(out, layout) < 1e-10


def test_stitching_with_noisy_sets_degrades_gracefully(layout):
    class Noisy(TruthModule):
        def sample(self, x, mask, **kw):
            out = super().sample(x, mask, **kw)
            return out + 0.02 * torch.randn(out.shape, dtype=out.dtype)

    out, _ = LayoutPredictor(Noisy(), "cpu", 300).predict(ArrayRows(layout), seed=0, uncertainty=None)
    assert cellwise_spearman(out, layout) > 0.95


def test_consensus_recovers_the_layout_from_sets(layout):
    out, spread = LayoutPredictor(TruthModule(), "cpu", 300).predict(
        ArrayRows(layout), seed=0, n_samples=3, consensus=True, uncertainty="samples"
    )
    assert cellwise_spearman(out, layout) > 0.99
    assert spread.shape == (len(layout),)


def test_sets_per_pass_does_not_change_the_layout(trained, tissue, monkeypatch):
    one = trained.get_latent_coordinates(tissue, seed=1, key_added=None, set_size=100)
    monkeypatch.setattr(_inference, "SETS_PER_PASS", 1)
    np.testing.assert_allclose(
        trained.get_latent_coordinates(tissue, seed=1, key_added=None, set_size=100), one, atol=1e-5
    )


def test_chunked_reading_equals_one_pass(trained, tissue, monkeypatch):
    full = trained.expression_view(tissue).all_rows()
    monkeypatch.setattr(_preprocessing, "CHUNK_SIZE", 7)
    np.testing.assert_allclose(trained.expression_view(tissue).all_rows(), full, atol=1e-5)
    z_small = trained.get_latent_representation(tissue, batch_size=13)
    np.testing.assert_allclose(z_small, trained.get_latent_representation(tissue), atol=1e-5)


def test_reference_preprocessing_is_fitted_once(trained, tissue):
    before = dict(trained.preprocessor_)
    sem.SpatialEDM.setup_anndata(tissue, batch_key="section")
    trained.get_latent_coordinates(tissue, seed=0, key_added=None)
    assert trained.preprocessor_ == before
    assert trained.preprocessor_["target_sum"] > 0  # the reference's median library size, stored
