"""GPU benchmark: training throughput, inference throughput and peak GPU memory, fp32 vs bf16.

Prepared for a single CUDA device; run with ``bash benchmarks/gpu/gpu.sh`` (it prints the device and
appends rows to ``--csv``: ``$OUT/results_gpu.csv`` on the lent machines, else
``benchmarks/results/gpu.csv``). Measurements, each in fp32 and in bf16 mixed
precision:

- training: sets per second over ``--train-epochs`` epochs of 256 sets (512-cell sets at most) on a
  100k-cell synthetic reference (50 genes), after one warm-up epoch;
- inference: cells per second of ``get_latent_coordinates`` (generator + one refiner step, stitched
  512-cell subsets) for 100k and 1M query cells;
- peak GPU memory (``torch.cuda.max_memory_allocated``) of each.

Examples
--------
python benchmarks/gpu/run_gpu.py --train-epochs 5 --infer 100000 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CSV = HERE.parent / "results" / "gpu.csv"
N_GENES = 50


def record(row: dict, path: Path = CSV) -> None:
    row = {
        "device": torch.cuda.get_device_name(0),
        "timestamp": dt.datetime.now().isoformat(timespec="seconds"),
        **row,
    }
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
    print(json.dumps(row), flush=True)


def main(argv=None) -> None:
    import scvi

    import spatialedm as se

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-ref", type=int, default=100_000)
    p.add_argument("--train-epochs", type=int, default=5)
    p.add_argument("--infer", nargs="+", type=int, default=[100_000, 1_000_000])
    p.add_argument("--precisions", nargs="+", default=["32", "bf16-mixed"])
    p.add_argument("--csv", type=Path, default=CSV, help="rows are appended here as each one is measured")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("No CUDA device: this benchmark needs a GPU.")
    scvi.settings.seed = 0
    ref = se.datasets.synthetic_tissue(n_cells=args.n_ref, n_genes=N_GENES, seed=0)
    se.SpatialEDM.setup_anndata(ref)
    queries = {}
    for n in args.infer:
        q = se.datasets.synthetic_tissue(n_cells=n, n_genes=N_GENES, seed=1)
        del q.obsm["spatial"]
        queries[n] = q
    for precision in args.precisions:
        model = se.SpatialEDM(ref)
        sets = model.set_config_["n_sets_per_epoch"]
        # warm-up (CUDA context, kernels), then the timed epochs
        model.train(
            max_epochs=3, accelerator="gpu", devices=1, precision=precision, enable_progress_bar=False
        )
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        model.train(
            max_epochs=args.train_epochs,
            accelerator="gpu",
            devices=1,
            precision=precision,
            enable_progress_bar=False,
        )
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        record(
            {
                "measurement": "training",
                "precision": precision,
                "n_cells": args.n_ref,
                "seconds": round(seconds, 2),
                "sets_per_s": round(sets * args.train_epochs / seconds, 1),
                "cells_per_s": "",
                "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20),
            },
            args.csv,
        )
        model.module.cuda()
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if precision.startswith("bf16")
            else contextlib.nullcontext()
        )
        for n, q in queries.items():
            with autocast:
                model.get_latent_coordinates(q[:1000].copy(), seed=0, key_added=None)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            with autocast:
                coords = model.get_latent_coordinates(q, seed=0, key_added=None)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            assert coords.shape == (n, 2) and bool(torch.isfinite(torch.as_tensor(coords)).all())
            record(
                {
                    "measurement": "inference",
                    "precision": precision,
                    "n_cells": n,
                    "seconds": round(seconds, 2),
                    "sets_per_s": "",
                    "cells_per_s": round(n / seconds),
                    "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20),
                },
                args.csv,
            )


if __name__ == "__main__":
    main()
