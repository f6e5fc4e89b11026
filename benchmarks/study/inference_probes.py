"""Inference-time probes on one trained model: stitching, and smoothing by expression neighbours.

For one task and seed this trains the default model with ``run_core.fit_spatialedm`` (so the untouched
layout reproduces the core benchmark's row) and scores variants of the inference on the held-out cells
(cellwise_spearman, patch_jaccard@10), one printed line each.

``--probe stitching`` (does stitching cost accuracy, would averaging several stitchings help?): a query
larger than one set (512 cells) is placed as overlapping random subsets joined through shared anchor
cells. Variants: K = 1, 2, 4, 8 (the generalised-Procrustes mean of K layouts stitched from different
random subsets) and one-set (the whole query as a single set, ``batch_size=n_query``), each for the
generator alone and with the refiner.

``--probe smoothing`` (would the query's own expression neighbours sharpen the layout?): the refined
layout ``x`` is moved towards the mean position of each cell's k = 10 nearest neighbours in the query's
30-component expression PCA (:func:`spatialedm.baselines.expression_pca`), ``(1 - a) x + a mean``, for
a = 0, 0.25, 0.5, 0.75. Not part of the model: a probe of whether expression neighbourhoods carry
spatial information that the layout misses.

Examples
--------
OMP_NUM_THREADS=1 python benchmarks/study/inference_probes.py osmfish_halves 0
OMP_NUM_THREADS=1 python benchmarks/study/inference_probes.py embryo_slab 0 --probe smoothing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO / "src", REPO / "benchmarks" / "quality"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from run_core import fit_spatialedm  # noqa: E402  (benchmarks/quality: the core rows' training)

from spatialedm.geometry import generalised_procrustes, unit_rms  # noqa: E402
from spatialedm.metrics import evaluate  # noqa: E402
from spatialedm.tasks import load_task  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task")
    p.add_argument("seed", type=int)
    p.add_argument("--probe", choices=["stitching", "smoothing"], default="stitching")
    args = p.parse_args(argv)
    task, seed = args.task, args.seed
    ref, query, info = load_task(task, seed=seed)
    key = info["spatial_key"]
    truth = np.asarray(query.obsm[key], dtype=np.float64)
    query = query.copy()
    del query.obsm[key]
    model, train_seconds = fit_spatialedm(ref, info, seed, train_kwargs={"enable_progress_bar": False})
    print(f"{task} seed {seed}: {query.n_obs} query cells, trained in {train_seconds:.0f} s")

    def score(layout):
        m = evaluate(layout, truth, k=10, seed=seed)
        return f"cellwise {m['cellwise_spearman']:.4f}  patch {m['patch_jaccard']:.4f}"

    if args.probe == "smoothing":
        smoothing(model, query, info, task, seed, score)
        return
    for refine in (False, True):
        chain = "refined" if refine else "generator"
        layouts = [
            model.get_latent_coordinates(query, refine=refine, seed=seed + 1000 * i, key_added=None)
            for i in range(8)
        ]
        for k in (1, 2, 4, 8):
            layout = unit_rms(generalised_procrustes(layouts[:k])) if k > 1 else layouts[0]
            print(f"{task} {seed} {chain:9s} K={k}     {score(layout)}", flush=True)
        one = model.get_latent_coordinates(
            query, refine=refine, seed=seed, key_added=None, batch_size=query.n_obs
        )
        print(f"{task} {seed} {chain:9s} one-set {score(one)}", flush=True)


def smoothing(model, query, info, task, seed, score) -> None:
    from sklearn.neighbors import NearestNeighbors

    from spatialedm.baselines import expression_pca

    layout = model.get_latent_coordinates(query, seed=seed, key_added=None)
    n_pcs = min(30, query.n_vars - 1, query.n_obs - 1)
    pcs = expression_pca(query, dim=n_pcs, layer=info["layer"], batch_key=info["batch_key"])
    idx = NearestNeighbors(n_neighbors=11).fit(pcs).kneighbors(pcs, return_distance=False)[:, 1:]
    for a in (0.0, 0.25, 0.5, 0.75):
        moved = (1 - a) * layout + a * layout[idx].mean(1)
        print(f"{task} {seed} refined smoothing a={a:.2f} {score(moved)}", flush=True)


if __name__ == "__main__":
    main()
