"""Train once on a held-out task, then score the generator and the refiner over sigma_start x n_steps.

Prints one line per setting, next to kNN regression and the query's expression PCA. Used to choose the
refiner's defaults and to compare model options on one seed.

Example
-------
OMP_NUM_THREADS=1 python benchmarks/quality/refiner_sweep.py starmap_section --epochs 30 --seed 0 \
    --model-kwargs '{"finetune_encoder": false}'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scvi
import torch

import spatialedm as sem
from spatialedm import baselines, metrics, tasks


def _fmt(pred, truth) -> str:
    r = metrics.evaluate(pred, truth)
    return (
        f"cellwise_spearman={r['cellwise_spearman']:.3f} patch_jaccard={r['patch_jaccard']:.3f} "
        f"knn_jaccard={r['knn_jaccard']:.3f} distance_spearman={r['distance_spearman']:.3f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=tasks.TASKS)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-kwargs", default="{}", help="JSON dict of ModelConfig fields")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    p.add_argument("--steps", type=int, nargs="+", default=[1, 4])
    p.add_argument(
        "--stochastic",
        action="store_true",
        help="also score refiners started from noise at sigma_start (a posterior sample; not the default)",
    )
    args = p.parse_args()

    scvi.settings.seed = args.seed
    ref, query, info = tasks.load_task(args.task, seed=args.seed)
    truth = np.asarray(query.obsm["spatial"], dtype=float)
    del query.obsm["spatial"]
    sem.SpatialEDM.setup_anndata(ref, layer=info["layer"], spatial_key="spatial", batch_key=info["batch_key"])
    model = sem.SpatialEDM(ref, **json.loads(args.model_kwargs))
    t0 = time.time()
    model.train(max_epochs=args.epochs, accelerator="cpu", enable_progress_bar=False)
    print(f"{args.task} seed={args.seed} {args.model_kwargs} train_s={time.time() - t0:.0f}")
    print(
        "generator           ",
        _fmt(model.get_latent_coordinates(query, refine=False, seed=0, key_added=None), truth),
    )
    for s in args.sigmas:
        for n in args.steps:
            pred = model.get_latent_coordinates(query, sigma_start=s, n_steps=n, seed=0, key_added=None)
            print(f"refined s={s:<4} n={n:<2}", _fmt(pred, truth))
            if args.stochastic:
                gen = torch.Generator().manual_seed(0)
                pred = model._sample_layout(model._query(query), 512, True, s, n, gen, True)
                print(f"stochastic s={s:<4} n={n:<2}", _fmt(pred, truth))
    print(
        "knn_regression      ",
        _fmt(baselines.knn_regression(ref, query, layer=info["layer"], batch_key=info["batch_key"]), truth),
    )
    print(
        "expression_pca      ",
        _fmt(baselines.expression_pca(query, dim=truth.shape[1], layer=info["layer"]), truth),
    )


if __name__ == "__main__":
    main()
