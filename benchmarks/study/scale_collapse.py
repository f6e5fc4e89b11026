"""Scale-collapse study (issue 4): refiner variants, per-σ diagnostics and open-loop sampling.

For each held-out task and seed, one model is trained with the defaults except
``refiner_loss="aligned"`` (the default when the study was run). Its encoder, context
encoder and generator are then shared by every refiner variant, each trained for the same number of
refiner epochs as the default (``stage_fractions=(0, 0, 1)``), so the variants differ only in the
refiner:

residual-aligned   residual around the generator, O(d) augmentation + aligned MSE (DESIGN.md decision 2)
residual-plain     residual, MSE against the fixed-orientation target, no augmentation (the default
                   since this study)
layout-aligned     SDEdit-style: the whole layout is diffused (generator output re-noised), aligned loss
layout-plain       SDEdit-style with the plain MSE: the seed's refiner
residual-gram-sigma  residual-aligned with sigma_data diluted as the seed's 32-column Gram targets dilute
                   it (factor sqrt(d / 32), measured on the task's sets and printed)

Every variant is scored on the task's held-out query cells: the full layout from
``get_latent_coordinates`` (refined, deterministic start), ``model.diagnose(query)`` (per-σ table) and
``model.sampling_probe(query)`` (σ_start ∈ {0.5, 1, 2, 3}, 1 and 4 Heun steps, stochastic starts and
pure noise). Rows are appended to three CSVs next to this script; ``--summary`` writes the tables to
docs/notes/scale-collapse-tables.md (included by the docs page) and the figure to docs/_static.

Examples
--------
OMP_NUM_THREADS=1 python benchmarks/study/scale_collapse.py --tasks osmfish_halves embryo_slab --seeds 0
python benchmarks/study/scale_collapse.py --summary
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from spatialedm.metrics import evaluate  # noqa: E402
from spatialedm.tasks import load_task  # noqa: E402

HERE = Path(__file__).resolve().parent
LAYOUT_CSV, DIAG_CSV, PROBE_CSV = HERE / "layouts.csv", HERE / "diagnose.csv", HERE / "probe.csv"
VARIANTS = {
    "residual-aligned": {"refiner_loss": "aligned"},
    "residual-plain": {"refiner_loss": "plain"},
    "layout-aligned": {"refiner_target": "layout", "refiner_loss": "aligned"},
    "layout-plain": {"refiner_target": "layout", "refiner_loss": "plain"},
    "residual-gram-sigma": {
        "refiner_loss": "aligned",
        "sigma_data_scale": None,
    },  # filled with the measured dilution
}


def append(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)


def gram_dilution(coords: np.ndarray, d_latent: int = 32, n_sets: int = 32, seed: int = 0) -> float:
    """sigma_data of the seed's Gram-factor targets over that of the d-dimensional targets.

    For random 256-cell sets (centred, unit per-axis RMS): factor the Gram matrix into ``d_latent``
    columns (eigenvectors times root eigenvalues, as the seed did) and compare the per-entry standard
    deviation over those columns with the per-axis one over the d real columns.
    """
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(n_sets):
        c = coords[rng.choice(len(coords), size=min(256, len(coords)), replace=False)]
        c = c - c.mean(0)
        c = c / np.sqrt((c**2).mean())
        val, vec = np.linalg.eigh(c @ c.T)
        top = np.argsort(val)[::-1][:d_latent]
        factor = vec[:, top] * np.sqrt(np.clip(val[top], 0, None))
        ratios.append(factor.std() / c.std())
    return float(np.mean(ratios))


def score_variant(model, query, truth, task, seed, variant, extra) -> None:
    rows = []
    stamp = dt.datetime.now().isoformat(timespec="seconds")
    for chain, refine in (("generator", False), ("refined", True)):
        if variant != "residual-aligned" and chain == "generator":
            continue  # same generator as the default
        t0 = time.perf_counter()
        pred = model.get_latent_coordinates(query, refine=refine, seed=seed, key_added=None)
        m = evaluate(pred, truth, k=10, seed=seed)
        rows.append(
            {
                "task": task,
                "seed": seed,
                "variant": variant,
                "chain": chain,
                **m,
                "seconds": round(time.perf_counter() - t0, 2),
                **extra,
                "timestamp": stamp,
            }
        )
        print(
            f"  {variant:20s} {chain:9s} cellwise {m['cellwise_spearman']:.3f} patch {m['patch_jaccard']:.3f}",
            flush=True,
        )
    append(LAYOUT_CSV, rows)
    diag = model.diagnose(query, n_sets=8, seed=seed)
    diag.insert(0, "variant", variant)
    diag.insert(0, "seed", seed)
    diag.insert(0, "task", task)
    append(DIAG_CSV, diag.to_dict("records"))
    probe = model.sampling_probe(query, n_sets=8, seed=seed)
    probe.insert(0, "variant", variant)
    probe.insert(0, "seed", seed)
    probe.insert(0, "task", task)
    append(PROBE_CSV, probe.to_dict("records"))


def run(task: str, seed: int, epochs: int, variants: list[str]) -> None:
    import scvi
    import torch

    from spatialedm import SpatialEDM
    from spatialedm._trainingplan import stage_epochs

    reference, query, info = load_task(task, seed=seed)
    key = info["spatial_key"]
    truth = np.asarray(query.obsm[key], dtype=np.float64)
    dilution = gram_dilution(np.asarray(reference.obsm[key], dtype=np.float64), seed=seed)
    print(
        f"[{task} seed={seed}] Gram-factor sigma_data / d-dim sigma_data = {dilution:.3f} "
        f"(sqrt(d/32) = {np.sqrt(info['dim'] / 32):.3f})",
        flush=True,
    )
    scvi.settings.seed = seed
    torch.manual_seed(seed)
    SpatialEDM.setup_anndata(reference, layer=info["layer"], spatial_key=key, batch_key=info["batch_key"])
    t0 = time.perf_counter()
    base = SpatialEDM(reference, **VARIANTS["residual-aligned"])
    base.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False)
    extra = {"train_seconds": round(time.perf_counter() - t0, 1), "gram_dilution": round(dilution, 4)}
    if "residual-aligned" in variants:
        score_variant(base, query, truth, task, seed, "residual-aligned", extra)
    refiner_epochs = stage_epochs(epochs, (0.2, 0.5, 0.3))[2]
    for name in variants:
        if name == "residual-aligned":
            continue
        options = dict(VARIANTS[name])
        if "sigma_data_scale" in options:
            options["sigma_data_scale"] = dilution
        scvi.settings.seed = seed
        torch.manual_seed(seed)
        model = SpatialEDM(reference, **{**base.model_config_, **options})
        state = {k: v for k, v in base.module.state_dict().items() if not k.startswith("denoiser.")}
        state["sigma_data"] = torch.tensor(0.0)
        model.module.load_state_dict(state, strict=False)
        model.set_config_ = copy.deepcopy(base.set_config_)
        model.scaler_state_ = copy.deepcopy(base.scaler_state_)
        t0 = time.perf_counter()
        model.train(
            max_epochs=refiner_epochs,
            accelerator="cpu",
            enable_progress_bar=False,
            plan_kwargs={"stage_fractions": (0, 0, 1)},
        )
        extra = {"train_seconds": round(time.perf_counter() - t0, 1), "gram_dilution": round(dilution, 4)}
        score_variant(model, query, truth, task, seed, name, extra)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["osmfish_halves", "embryo_slab"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--summary", action="store_true", help="only write the tables and figure from the CSVs")
    args = p.parse_args(argv)
    if args.summary:
        from summarize import main as summarize

        summarize()
        return
    for task in args.tasks:
        for seed in args.seeds:
            run(task, seed, args.epochs, args.variants)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
