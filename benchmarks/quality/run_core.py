"""Core quality benchmark: held-out reconstruction tasks × seeds × methods.

For each task (see ``spatialedm.tasks.load_task``) and seed, every method places the query cells from
expression alone; the query's true coordinates are kept aside for scoring and removed from the copy
that the methods see. Rows are appended to a CSV as each method finishes, so a partial run is useful.

Methods
-------
spatialedm  trains ``SpatialEDM`` on the reference, then scores ``get_latent_coordinates(refine=False)``
            as ``spatialedm_generator`` and ``refine=True`` as ``spatialedm_refined``
knn         ``spatialedm.baselines.knn_regression`` -> ``knn_regression``
pca         ``spatialedm.baselines.expression_pca`` (query only, no reference) -> ``expression_pca``
random      ``spatialedm.baselines.random_layout`` -> ``random``

Examples
--------
python benchmarks/quality/run_core.py --tasks osmfish_halves embryo_slab starmap_section \
    dlpfc_section merfish_section --seeds 0 1 2 --methods spatialedm knn pca \
    --out benchmarks/quality/results_core.csv --summary
python benchmarks/quality/run_core.py --summary-only --out benchmarks/quality/results_core.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from spatialedm import baselines  # noqa: E402
from spatialedm.metrics import evaluate  # noqa: E402
from spatialedm.tasks import load_task  # noqa: E402

CORE_TASKS = ["osmfish_halves", "embryo_slab", "starmap_section", "dlpfc_section", "merfish_section"]
METRICS = [
    "cellwise_spearman",
    "patch_jaccard",
    "knn_jaccard",
    "distance_spearman",
    "trustworthiness",
    "procrustes_disparity",
    "scale_ratio",
]
SUMMARY_METRICS = ["cellwise_spearman", "patch_jaccard", "knn_jaccard", "distance_spearman"]
FIELDS = [
    "task",
    "seed",
    "method",
    "tag",
    *METRICS,
    "seconds",
    "train_seconds",
    "n_ref",
    "n_query",
    "config",
    "timestamp",
]
START, END = "<!-- core-quality:start -->", "<!-- core-quality:end -->"


def append_row(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def score(pred, truth, seed) -> dict:
    return {k: float(v) for k, v in evaluate(pred, truth, k=10, seed=seed).items()}


def run_spatialedm(ref, query, info, seed, model_kwargs, train_kwargs):
    """Yield (method, prediction, seconds, train_seconds); yields nothing if the model is unavailable."""
    try:
        import scvi
        import torch

        from spatialedm import SpatialEDM
    except Exception as err:  # noqa: BLE001 - any import failure means "skip this method"
        print(f"  ! spatialedm is not importable ({type(err).__name__}: {err}); skipping it", flush=True)
        return
    scvi.settings.seed = seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    ref = ref.copy()
    SpatialEDM.setup_anndata(
        ref, layer=info["layer"], spatial_key=info["spatial_key"], batch_key=info["batch_key"]
    )
    model = SpatialEDM(ref, **model_kwargs)
    kwargs = {"accelerator": "cpu", **train_kwargs}
    t0 = time.perf_counter()
    model.train(**kwargs)
    train_seconds = time.perf_counter() - t0
    for method, refine in (("spatialedm_generator", False), ("spatialedm_refined", True)):
        t0 = time.perf_counter()
        pred = model.get_latent_coordinates(query, refine=refine, seed=seed, key_added=None)
        yield method, np.asarray(pred), time.perf_counter() - t0, train_seconds


def run_task(name, seed, methods, out, tag, model_kwargs, train_kwargs):
    reference, query, info = load_task(name, seed=seed)
    truth = np.asarray(query.obsm[info["spatial_key"]], dtype=np.float64).copy()
    query_in = query.copy()
    del query_in.obsm[info["spatial_key"]]  # the methods never see the query's coordinates
    print(
        f"[{name} seed={seed}] reference {reference.n_obs} × {reference.n_vars}, query {query.n_obs}, "
        f"dim {info['dim']}, batch_key={info['batch_key']}",
        flush=True,
    )
    base = {
        "task": name,
        "seed": seed,
        "n_ref": reference.n_obs,
        "n_query": query.n_obs,
    }

    def record(method, pred, seconds, train_seconds=float("nan"), config="", tag=""):
        row = {
            **base,
            "method": method,
            "tag": tag,
            **score(pred, truth, seed),
            "seconds": round(seconds, 3),
            "train_seconds": round(train_seconds, 3) if np.isfinite(train_seconds) else "",
            "config": config,
            "timestamp": dt.datetime.now().isoformat(timespec="seconds"),
        }
        append_row(out, row)
        print(
            f"  {method:22s} cellwise_spearman {row['cellwise_spearman']:.3f}  patch_jaccard "
            f"{row['patch_jaccard']:.3f}  knn_jaccard {row['knn_jaccard']:.3f}  distance_spearman "
            f"{row['distance_spearman']:.3f}  ({seconds:.1f} s)",
            flush=True,
        )

    for m in methods:
        try:
            if m == "knn":
                t0 = time.perf_counter()
                pred = baselines.knn_regression(
                    reference,
                    query_in,
                    spatial_key=info["spatial_key"],
                    layer=info["layer"],
                    batch_key=info["batch_key"],
                )
                record("knn_regression", pred, time.perf_counter() - t0)
            elif m == "pca":
                t0 = time.perf_counter()
                pred = baselines.expression_pca(query_in, dim=info["dim"], layer=info["layer"])
                record("expression_pca", pred, time.perf_counter() - t0)
            elif m == "random":
                t0 = time.perf_counter()
                pred = baselines.random_layout(query_in, dim=info["dim"], seed=seed)
                record("random", pred, time.perf_counter() - t0)
            elif m == "spatialedm":
                config = json.dumps({"model": model_kwargs, "train": train_kwargs}, sort_keys=True)
                for method, pred, seconds, train_seconds in run_spatialedm(
                    reference, query_in, info, seed, model_kwargs, train_kwargs
                ):
                    record(method, pred, seconds, train_seconds, config, tag)
        except Exception:  # noqa: BLE001 - keep going with the other methods and tasks
            print(f"  ! {m} failed on {name} seed {seed}:", flush=True)
            traceback.print_exc()


def machine() -> str:
    proc = platform.processor() or platform.machine()
    return f"{platform.system()} {proc}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def summary_table(csv_path: Path, tasks: list[str] | None = None) -> str:
    import pandas as pd

    df = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    df["tag"] = df["tag"].fillna("").astype(str)
    # a rerun of the same (task, seed, method, tag) replaces the earlier row
    df = df.drop_duplicates(["task", "seed", "method", "tag"], keep="last")
    df["label"] = np.where(df["tag"] == "", df["method"], df["method"] + " [" + df["tag"] + "]")
    order = tasks or list(dict.fromkeys(df["task"]))
    lines = [
        "| task | method | n seeds | " + " | ".join(SUMMARY_METRICS) + " | seconds |",
        "|---|---|---|" + "---|" * len(SUMMARY_METRICS) + "---|",
    ]
    for task in order:
        sub = df[df["task"] == task]
        for label, g in sub.groupby("label", sort=False):
            cells = []
            for m in SUMMARY_METRICS:
                v = g[m].astype(float)
                cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}")
            sec = g["seconds"].astype(float) + g["train_seconds"].astype(float).fillna(0.0)
            lines.append(f"| {task} | {label} | {len(g)} | " + " | ".join(cells) + f" | {sec.mean():.1f} |")
    return "\n".join(lines)


def write_summary(csv_path: Path, md_path: Path, tasks: list[str] | None, command: str) -> str:
    table = summary_table(csv_path, tasks)
    try:
        csv_rel = csv_path.resolve().relative_to(REPO)
    except ValueError:
        csv_rel = csv_path
    block = "\n".join(
        [
            START,
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine()}  ",
            f"Date: {dt.date.today().isoformat()}  ",
            f"Raw rows: `{csv_rel}`. Mean ± std over seeds (sample std); seconds = fit + inference "
            "(for spatialedm, training included). The seed changes random splits, model training and the "
            "metrics' subsampling; the baselines on spatial/section splits are deterministic, so their spread "
            "is subsampling noise only.",
            "",
            table,
            "",
            END,
        ]
    )
    if md_path.exists():
        text = md_path.read_text()
    else:
        text = "# spatialedm benchmark results\n"
    if START in text and END in text:
        pre, rest = text.split(START, 1)
        post = rest.split(END, 1)[1]
        text = pre + block + post
    else:
        text = text.rstrip("\n") + "\n\n## Core quality (held-out reconstruction)\n\n" + block + "\n"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text)
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=CORE_TASKS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--methods",
        nargs="+",
        default=["spatialedm", "knn", "pca"],
        choices=["spatialedm", "knn", "pca", "random"],
    )
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/quality/results_core.csv")
    p.add_argument("--model-kwargs", default="{}", help="JSON dict passed to SpatialEDM(ref, **kwargs)")
    p.add_argument("--train-kwargs", default="{}", help="JSON dict passed to model.train(**kwargs)")
    p.add_argument(
        "--tag",
        default="",
        help="label stored with the spatialedm rows (e.g. a config name), shown beside the method name",
    )
    p.add_argument("--summary", action="store_true", help="write the markdown summary after running")
    p.add_argument("--summary-only", action="store_true", help="only write the summary from --out")
    p.add_argument("--results-md", type=Path, default=REPO / "benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    command = "python " + shlex.join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])
    if not args.summary_only:
        model_kwargs = json.loads(args.model_kwargs)
        train_kwargs = json.loads(args.train_kwargs)
        for name in args.tasks:
            for seed in args.seeds:
                try:
                    run_task(name, seed, args.methods, args.out, args.tag, model_kwargs, train_kwargs)
                except FileNotFoundError as err:
                    print(f"[{name}] skipped: {err}", flush=True)
                    break
    if args.summary or args.summary_only:
        if not args.out.exists():
            print(f"No results at {args.out}; nothing to summarise.")
            return
        print(write_summary(args.out, args.results_md, args.tasks, command))


if __name__ == "__main__":
    main()
