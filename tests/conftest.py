from __future__ import annotations

import numpy as np
import pytest
import torch

import spatialedm as sem

# Tiny networks and sets keep every training test to a few seconds on 2 CPU cores.
TINY = {"n_hidden": 32, "n_latent": 16, "dim": 16, "n_inducing": 4, "n_heads": 2, "n_denoiser_blocks": 1}
TINY_SETS = {
    "n_sets_per_epoch": 8,
    "sets_per_batch": 4,
    "min_set_size": 16,
    "max_set_size": 48,
    "n_validation_sets": 4,
}


@pytest.fixture(scope="session")
def tiny():
    """Tiny network settings (shared: do not mutate; spread into a new dict to change one)."""
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_sets():
    """Tiny training-set settings (shared: do not mutate)."""
    return dict(TINY_SETS)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def tissue():
    """Two sections of a synthetic tissue, raw counts, 2-D."""
    return sem.datasets.synthetic_tissue(n_cells=300, n_genes=20, n_sections=2, dim=2, seed=1)


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained for 3 epochs (one per stage) on a two-section synthetic tissue."""
    adata = sem.datasets.synthetic_tissue(n_cells=300, n_genes=20, n_sections=2, dim=2, seed=2)
    sem.SpatialEDM.setup_anndata(adata, spatial_key="spatial", batch_key="section")
    model = sem.SpatialEDM(adata, **TINY)
    model.train(max_epochs=3, accelerator="cpu", datasplitter_kwargs=TINY_SETS, enable_progress_bar=False)
    return model
