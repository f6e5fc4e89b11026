"""Train SpatialEDM with Lightning DDP on 2 CPU processes (run by tests/test_ddp.py).

Lightning's ``ddp`` strategy re-runs this script for the second rank, so everything below runs once
per rank; each rank writes a checksum of its weights and the sets it trained on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

import spatialedm as se

if __name__ == "__main__":
    out = Path(sys.argv[1])
    adata = se.datasets.synthetic_tissue(n_cells=600, n_genes=30, seed=0)
    se.SpatialEDM.setup_anndata(adata)
    model = se.SpatialEDM(adata)
    model.train(
        max_epochs=3,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        datasplitter_kwargs={"n_sets_per_epoch": 16, "min_set_size": 32, "max_set_size": 64},
    )
    rank = torch.distributed.get_rank()
    weights = float(sum(p.detach().double().sum() for p in model.module.parameters()))
    coords = model.get_latent_coordinates(adata, seed=0, key_added=None)
    (out / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "world_size": torch.distributed.get_world_size(),
                "weights": weights,
                "first_set": model.trainer.datamodule.train_dataset.rng.integers(0, 10**9),
                "finite": bool(np.isfinite(coords).all()),
                # only rank 0 logs, so only it has a history
                "epochs": len(model.history["train_loss"]) if rank == 0 else None,
            },
            default=int,
        )
    )
