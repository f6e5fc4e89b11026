"""Names the docstring examples of ``src/spatialedm`` use, so that they run as written.

``model`` is a tiny model trained for a few seconds on a two-section synthetic tissue; ``query`` holds
cells of the same tissue with their true coordinates in ``obsm["spatial"]`` and labels in ``obs``.
Examples run in a temporary folder, so files they write (``model_dir``, figures) go nowhere.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(scope="session")
def _doctest_model():
    import torch

    import spatialedm as sem

    torch.manual_seed(0)
    adata = sem.datasets.synthetic_tissue(n_cells=300, n_genes=20, n_sections=2, seed=2)
    adata.obs["domain"] = np.where(
        adata.obsm["spatial"][:, 0] > np.median(adata.obsm["spatial"][:, 0]), "a", "b"
    )
    sem.SpatialEDM.setup_anndata(adata, spatial_key="spatial", batch_key="section")
    model = sem.SpatialEDM(
        adata, n_hidden=32, n_latent=16, dim=16, n_inducing=4, n_heads=2, n_denoiser_blocks=1
    )
    sets = {
        "n_sets_per_epoch": 8,
        "sets_per_batch": 4,
        "min_set_size": 16,
        "max_set_size": 48,
        "n_validation_sets": 4,
    }
    model.train(max_epochs=3, accelerator="cpu", datasplitter_kwargs=sets, enable_progress_bar=False)
    query = sem.datasets.synthetic_tissue(n_cells=120, n_genes=20, n_sections=1, seed=5)
    query.obs["domain"] = np.where(
        query.obsm["spatial"][:, 0] > np.median(query.obsm["spatial"][:, 0]), "a", "b"
    )
    return model, query


@pytest.fixture(autouse=True)
def _doctest_names(request, tmp_path, monkeypatch):
    if not isinstance(request.node, DoctestItem):
        return
    import spatialedm as sem

    model, query = request.getfixturevalue("_doctest_model")
    ns = request.getfixturevalue("doctest_namespace")
    ns.update({"sem": sem, "np": np, "model": model, "query": query.copy()})
    monkeypatch.chdir(tmp_path)
