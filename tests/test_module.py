"""Losses of the module: the gauge (rotation, reflection, translation of a target) must not matter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spatialedm as sem
from spatialedm._constants import MASK_KEY
from spatialedm._datasplitter import SetDataSplitter
from spatialedm._module import SpatialEDMModule
from spatialedm.geometry import random_orthogonal

TINY = {"n_hidden": 32, "n_latent": 16, "dim": 16, "n_inducing": 4, "n_heads": 2, "n_denoiser_blocks": 1}


def _batch(d=2, n=40, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, 10, generator=g)
    coords = torch.randn(b, n, d, generator=g) * torch.tensor([3.0, 1.0, 0.5][:d])
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, 30:] = False
    return {"X": x, "spatial": coords, MASK_KEY: mask}


@pytest.mark.parametrize("stage", ["encoder", "generator", "refiner"])
@pytest.mark.parametrize("d", [2, 3])
def test_losses_ignore_rotation_reflection_translation_of_the_target(stage, d):
    torch.manual_seed(0)
    module = SpatialEDMModule(10, d, sem.ModelConfig(**TINY))
    module.sigma_data.fill_(0.5)
    module.eval()  # no augmentation noise, no running sigma_data update
    batch = _batch(d)
    moved = dict(batch)
    rot = random_orthogonal(3, d, generator=torch.Generator().manual_seed(1))
    rot[0] = rot[0] @ torch.diag(torch.tensor([-1.0] + [1.0] * (d - 1)))  # a reflection as well
    moved["spatial"] = batch["spatial"] @ rot + torch.randn(3, 1, d) * 5.0
    kw = {"stage": stage}

    def loss(b):
        torch.manual_seed(7)  # the same noise levels and noise draws in the refiner stage
        return module(b, inference_kwargs=kw, generative_kwargs=kw, loss_kwargs=kw)[2].loss

    torch.testing.assert_close(loss(moved), loss(batch), rtol=1e-4, atol=1e-5)


def test_training_sets_never_touch_the_validation_block(tissue):
    sem.SpatialEDM.setup_anndata(tissue, batch_key="section")
    model = sem.SpatialEDM(tissue, **TINY)
    config = sem.SetConfig(n_sets_per_epoch=64, min_set_size=8, max_set_size=64, validation_fraction=0.2)
    splitter = SetDataSplitter(model.adata_manager, model.preprocessor, config, seed=3)
    val = set(splitter.val_idx.tolist())
    assert len(val) >= 2 * 0.15 * 150  # one block per section
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert val.isdisjoint(splitter.train_dataset.sampler.draw(rng).tolist())
    for idx in splitter.val_dataset.fixed_sets:
        assert set(idx.tolist()) <= val
    # the held-out cells of a section are one ball around a centre cell: every other cell is farther out
    sections = np.asarray(tissue.obs["section"].cat.codes)
    for sec in np.unique(sections):
        inside = np.flatnonzero(splitter.val_mask & (sections == sec))
        outside = np.flatnonzero(~splitter.val_mask & (sections == sec))
        radius = np.linalg.norm(
            splitter.coords[inside][:, None] - splitter.coords[inside][None], axis=-1
        ).max(1)
        centre = inside[np.argmin(radius)]
        d_in = np.linalg.norm(splitter.coords[inside] - splitter.coords[centre], axis=1).max()
        d_out = np.linalg.norm(splitter.coords[outside] - splitter.coords[centre], axis=1).min()
        assert d_out >= d_in * 0.5
