"""Scale benchmark: inference time and peak memory against query size, training time per epoch.

Every measurement runs in a fresh Python process, so its peak resident memory (``ru_maxrss``) is its
own. Query and reference cells come from :func:`spatialedm.datasets.synthetic_tissue` (50 genes).

spatialedm inference  a model trained for 3 epochs on 5,000 synthetic cells (quality is irrelevant
                      here) places 1k, 10k, 100k and 1M query cells (``get_latent_coordinates`` with
                      its defaults: generator + one refiner step on stitched 512-cell subsets, the
                      spacing relaxation and the expression-neighbour uncertainty)
                      ``--infer-bare``: the same with ``relax=False, uncertainty=None`` (method
                      "spatialedm, network only"), so that the two steps' cost is the difference;
                      ``--infer-neighbors``: the same with ``uncertainty="neighbors"`` (method
                      "spatialedm, neighbours' spread"), the cheaper uncertainty;
                      ``--infer-prior``: the same with ``prior="knn"`` (method "spatialedm, kNN prior":
                      the model loaded with its reference, whose tuned kNN regression is the prior)
spatialedm training   seconds per epoch (256 sets) with 10k and 100k reference cells
Tangram               ``tg.map_cells_to_space(mode="cells", device="cpu")`` of the query onto a
                      5,000-spot reference, where it fits in memory (runs in the peers' environment,
                      ``benchmarks/requirements-peers.txt``; skipped when tangram is not importable).
                      ``--tangram-epochs`` (default 1000, Tangram's own) shortens runs that would take
                      hours: every epoch costs the same (one pass over the full cells x spots matrix),
                      so seconds per epoch and the peak memory are measured; the status names the
                      epochs run

Results are appended to ``benchmarks/results/scale.csv``; ``--summary`` writes the table between the markers in
``benchmarks/RESULTS.md`` and the curves to ``benchmarks/results/scale.png``.

Examples
--------
python -m benchmarks.run_scale --infer 1000 10000 100000 1000000 --infer-bare 100000 1000000 --infer-neighbors 100000 1000000 --train 10000 100000
python -m benchmarks.run_scale --infer 100000 1000000 --infer-prior 100000 1000000
.venv-bench/bin/python -m benchmarks.run_scale --tangram 1000 10000 --tangram-timeout 1800
.venv-bench/bin/python -m benchmarks.run_scale --tangram 10000 100000 --tangram-epochs 20
python -m benchmarks.run_scale --summary
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CSV = REPO / "benchmarks" / "results" / "scale.csv"
RESULTS_MD = REPO / "benchmarks/RESULTS.md"
START, END = "<!-- scale:start -->", "<!-- scale:end -->"
FIELDS = [
    "method",
    "kind",
    "n_cells",
    "seconds",
    "seconds_per_epoch",
    "peak_rss_mb",
    "base_rss_mb",
    "status",
    "threads",
    "machine",
    "timestamp",
]
N_GENES = 50


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )


# ---------------------------------------------------------------- child processes
def _reference():
    import spatialedm as se

    ref = se.datasets.synthetic_tissue(n_cells=5000, n_genes=N_GENES, seed=0)
    se.SpatialEDM.setup_anndata(ref)
    return ref


def child_fit(model_dir: str) -> dict:
    import scvi

    import spatialedm as se

    scvi.settings.seed = 0
    ref = _reference()
    model = se.SpatialEDM(ref)
    model.train(max_epochs=3, accelerator="cpu", enable_progress_bar=False)
    model.save(model_dir, overwrite=True)
    return {"status": "ok"}


def child_infer(model_dir: str, n: int, variant: str = "") -> dict:
    """Place ``n`` synthetic cells with the defaults, or as ``variant`` says ("bare", "neighbors", "prior")."""
    import spatialedm as se

    model = se.SpatialEDM.load(model_dir, adata=_reference() if variant == "prior" else None)
    query = se.datasets.synthetic_tissue(n_cells=n, n_genes=N_GENES, seed=1)
    del query.obsm["spatial"]
    base = rss_mb()
    t0 = time.perf_counter()
    kwargs = {
        "bare": {"relax": False, "uncertainty": None},
        "neighbors": {"uncertainty": "neighbors"},
        "prior": {"prior": "knn"},
        "": {},
    }[variant]
    coords = model.get_latent_coordinates(query, seed=0, key_added=None, **kwargs)
    seconds = time.perf_counter() - t0
    assert coords.shape == (n, 2)
    return {"seconds": seconds, "peak_rss_mb": peak_mb(), "base_rss_mb": base, "status": "ok"}


def child_train(n: int, epochs: int) -> dict:
    import scvi

    import spatialedm as se

    scvi.settings.seed = 0
    ref = se.datasets.synthetic_tissue(n_cells=n, n_genes=N_GENES, seed=0)
    se.SpatialEDM.setup_anndata(ref)
    model = se.SpatialEDM(ref)
    base = rss_mb()
    t0 = time.perf_counter()
    model.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "seconds_per_epoch": seconds / epochs,
        "peak_rss_mb": peak_mb(),
        "base_rss_mb": base,
        "status": "ok",
    }


def child_tangram(n: int, epochs: int = 1000) -> dict:
    import numpy as np
    import scanpy as sc
    import tangram as tg

    import spatialedm as se

    ref = se.datasets.synthetic_tissue(n_cells=5000, n_genes=N_GENES, seed=0)
    query = se.datasets.synthetic_tissue(n_cells=n, n_genes=N_GENES, seed=1)
    for a in (ref, query):
        sc.pp.normalize_total(a)
        sc.pp.log1p(a)
    tg.pp_adatas(query, ref, genes=None)
    base = rss_mb()
    t0 = time.perf_counter()
    mapping = tg.map_cells_to_space(
        query, ref, mode="cells", device="cpu", num_epochs=epochs, random_state=0, verbose=False
    )
    m = np.asarray(mapping.X)
    coords = (m / m.sum(1, keepdims=True)) @ np.asarray(ref.obsm["spatial"])
    seconds = time.perf_counter() - t0
    assert coords.shape == (n, 2)
    status = "ok" if epochs == 1000 else f"ok, {epochs} of Tangram's default 1000 epochs"
    return {
        "seconds": seconds,
        "seconds_per_epoch": seconds / epochs,
        "peak_rss_mb": peak_mb(),
        "base_rss_mb": base,
        "status": status,
    }


# ---------------------------------------------------------------- parent
def run_child(args: list[str], timeout: float, python: str = sys.executable) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [python, __file__, "--child", *args, "--child-out", out.name]
        try:
            proc = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"status": f"timeout after {timeout:.0f} s"}
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
            killed = proc.returncode in (-9, 137)
            return {"status": "killed (out of memory?)" if killed else f"failed: {tail[0][:200]}"}
        return json.loads(Path(out.name).read_text())


def record(method: str, kind: str, n: int, res: dict) -> None:
    row = {
        "method": method,
        "kind": kind,
        "n_cells": n,
        **res,
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "machine": machine(),
        "timestamp": dt.datetime.now().isoformat(timespec="seconds"),
    }
    new = not CSV.exists()
    with CSV.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)
    print(json.dumps(row), flush=True)


def summary() -> str:
    import pandas as pd

    df = pd.read_csv(CSV).drop_duplicates(["method", "kind", "n_cells"], keep="last")
    lines = [
        "| method | measurement | cells | seconds | s / epoch | peak RSS (MB) | RSS before (MB) | status |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def f(v, p=1):
        return "" if pd.isna(v) else f"{v:.{p}f}"

    for _, r in df.sort_values(["kind", "method", "n_cells"]).iterrows():
        lines.append(
            f"| {r['method']} | {r['kind']} | {int(r['n_cells']):,} | {f(r['seconds'])} | "
            f"{f(r['seconds_per_epoch'])} | {f(r['peak_rss_mb'], 0)} | {f(r['base_rss_mb'], 0)} | "
            f"{r['status']} |"
        )
    table = "\n".join(lines)
    try:
        plot(df)
    except Exception as err:  # noqa: BLE001 - the table matters more than the figure
        print(f"figure skipped: {err}")
    block = "\n".join(
        [
            START,
            "",
            "Command: `python -m benchmarks.run_scale --summary` (rows from "
            "the commands in `benchmarks/run_scale.py`)  ",
            f"Machine: {machine()}  ",
            f"Date: {dt.date.today().isoformat()}  ",
            "Raw rows: `benchmarks/results/scale.csv`; curves: `benchmarks/results/scale.png`.",
            "",
            table,
            "",
            END,
        ]
    )
    text = RESULTS_MD.read_text()
    if START in text:
        pre, rest = text.split(START, 1)
        text = pre + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Scale\n\n" + block + "\n"
    RESULTS_MD.write_text(text)
    return table


def plot(df) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inf = df[(df["kind"] == "inference") & df["status"].astype(str).str.startswith("ok")].copy()
    # Shortened Tangram runs: its time at the default 1000 epochs is seconds per epoch x 1000.
    short = inf["status"] != "ok"
    inf.loc[short, "seconds"] = inf.loc[short, "seconds_per_epoch"] * 1000
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, g in inf.groupby("method"):
        g = g.sort_values("n_cells")
        (line,) = axes[0].loglog(g["n_cells"], g["seconds"], "o-", label=method)
        axes[1].loglog(g["n_cells"], g["peak_rss_mb"], "o-", label=method)
        est = g[g["status"] != "ok"]
        if len(est):
            axes[0].loglog(
                est["n_cells"],
                est["seconds"],
                "o",
                mfc="white",
                color=line.get_color(),
                label=f"{method}: 1000 x measured s/epoch",
            )
    axes[0].set(xlabel="query cells", ylabel="seconds", title="inference / mapping time")
    axes[1].set(xlabel="query cells", ylabel="peak RSS (MB)", title="peak memory")
    for ax in axes:
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(CSV.parent / "scale.png", dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--infer", nargs="*", type=int, default=[])
    p.add_argument("--infer-bare", nargs="*", type=int, default=[])
    p.add_argument("--infer-neighbors", nargs="*", type=int, default=[])
    p.add_argument("--infer-prior", nargs="*", type=int, default=[])
    p.add_argument("--train", nargs="*", type=int, default=[])
    p.add_argument("--train-epochs", type=int, default=3)
    p.add_argument("--tangram", nargs="*", type=int, default=[])
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--tangram-timeout", type=float, default=1800)
    p.add_argument("--tangram-epochs", type=int, default=1000, help="Tangram's num_epochs (its default 1000)")
    p.add_argument("--summary", action="store_true")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        fn = {"fit": child_fit, "infer": child_infer, "train": child_train, "tangram": child_tangram}[kind]
        conv = [int(x) if x.isdigit() else x for x in rest]
        Path(args.child_out).write_text(json.dumps(fn(*conv)))
        return
    if args.infer or args.infer_bare or args.infer_neighbors or args.infer_prior:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = str(Path(tmp) / "model")
            res = run_child(["fit", model_dir], args.timeout)
            if res["status"] != "ok":
                raise RuntimeError(f"could not train the model for the inference runs: {res['status']}")
            for n in args.infer:
                record("spatialedm", "inference", n, run_child(["infer", model_dir, str(n)], args.timeout))
            for n in args.infer_bare:
                res = run_child(["infer", model_dir, str(n), "bare"], args.timeout)
                record("spatialedm, network only", "inference", n, res)
            for n in args.infer_neighbors:
                res = run_child(["infer", model_dir, str(n), "neighbors"], args.timeout)
                record("spatialedm, neighbours' spread", "inference", n, res)
            for n in args.infer_prior:
                res = run_child(["infer", model_dir, str(n), "prior"], args.timeout)
                record("spatialedm, kNN prior", "inference", n, res)
    for n in args.train:
        record(
            "spatialedm", "training", n, run_child(["train", str(n), str(args.train_epochs)], args.timeout)
        )
    for n in args.tangram:
        record(
            "tangram",
            "inference",
            n,
            run_child(["tangram", str(n), str(args.tangram_epochs)], args.tangram_timeout),
        )
    if args.summary:
        print(summary())


if __name__ == "__main__":
    main()
