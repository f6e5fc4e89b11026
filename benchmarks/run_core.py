"""Core quality benchmark: held-out reconstruction tasks × seeds × methods.

For each task (``benchmarks.tasks.load_task``) and seed, every method places the query cells from
expression alone; the query's true coordinates are kept aside for scoring and removed from the copy
that the methods see. Rows are appended to a CSV as each method finishes, so a partial run is useful.
Every row holds the agreement metrics and the shape metrics of ``spatialedm.metrics.evaluate`` (with the
task's cell labels, where it has them, for the neighbourhood-enrichment agreement).

Methods
-------
spatialedm  trains ``SpatialEDM`` on the reference (defaults), then scores
            ``get_latent_coordinates(refine=False)`` as ``spatialedm_generator`` and the default
            (``refine=True``) as ``spatialedm_refined``
knn         ``spatialedm.baselines.knn_regression`` (k and PCA size chosen on the reference) -> ``knn_regression``
knn10       the same with fixed k = 10 and 50 PCs (capped by the genes), the plain recipe -> ``knn_regression_k10``
nn1         ``spatialedm.baselines.nearest_neighbor`` -> ``nearest_neighbor``
ot          ``spatialedm.baselines.optimal_transport`` (fused Gromov-Wasserstein, POT) -> ``optimal_transport``
pca         ``spatialedm.baselines.expression_pca`` (query only, no reference) -> ``expression_pca``
random      ``spatialedm.baselines.random_layout`` -> ``random``
uniform     ``spatialedm.metrics.uniform_fill`` of the truth's bounding box -> ``uniform_fill``: the floor of
            the shape metrics only (it is built from the truth, so its agreement metrics mean nothing)
tangram     Tangram ``mode="cells"`` mapping (``benchmarks.peers``) -> ``tangram``
novosparc   novoSpaRc reference-based fused Gromov-Wasserstein -> ``novosparc``
celery      CeLEry coordinate regression -> ``celery``

The peers are not dependencies of spatialedm (install them with ``benchmarks/requirements-peers.txt``);
``--peer-kwargs`` passes keyword arguments to their functions and is stored in the ``config`` column.

Resources
---------
Every row records ``seconds`` (wall time of the method's fit + inference; spatialedm's training time is
in ``train_seconds``) and ``peak_mb``: the peak resident set size (RSS) of this Python process while the
method ran, minus its RSS when the method started, in MiB, sampled every 10 ms by a background thread
from ``/proc/self/statm`` (``psutil`` elsewhere); child processes are not counted.

Examples
--------
Run from the repository root (``benchmarks`` is a package; only spatialedm's public API is used)::

    python -m benchmarks.run_core --tasks osmfish_halves embryo_slab --seeds 0 1 2 \
        --methods spatialedm knn nn1 ot pca uniform --summary
    python -m benchmarks.run_core --summary-only --csv benchmarks/results/core.csv benchmarks/results/peers.csv
    python -m benchmarks.run_core --tiny --out /tmp/tiny.csv   # a minute-long smoke run (CI)
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
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.tasks import load_task
from spatialedm import baselines, metrics

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

PEERS = ["tangram", "novosparc", "celery"]

CORE_TASKS = ["osmfish_halves", "embryo_slab", "starmap_section", "dlpfc_section", "merfish_section"]
METRICS = [
    "cellwise_spearman",
    "patch_jaccard",
    "knn_jaccard",
    "distance_spearman",
    "trustworthiness",
    "procrustes_disparity",
    "scale_ratio",
    "sliced_wasserstein",
    "nn_distance_ratio",
    "nn_cv_excess",
    "coverage_recall",
    "coverage_precision",
    "nhood_enrichment_agreement",
    "uncertainty_calibration",
]
SUMMARY_METRICS = ["cellwise_spearman", "patch_jaccard", "distance_spearman"]
SHAPE_METRICS = [
    "sliced_wasserstein",
    "nn_distance_ratio",
    "nn_cv_excess",
    "coverage_recall",
    "coverage_precision",
    "nhood_enrichment_agreement",
    "uncertainty_calibration",
]
#: Settings of ``--tiny``: a smoke run of the whole pipeline in about a minute.
TINY_MODEL = {
    "n_hidden": 32,
    "n_latent": 16,
    "dim": 16,
    "n_inducing": 4,
    "n_heads": 2,
    "n_denoiser_blocks": 1,
}
TINY_TRAIN = {
    "max_epochs": 3,
    "datasplitter_kwargs": {"n_sets_per_epoch": 8, "min_set_size": 32, "max_set_size": 128},
    "enable_progress_bar": False,
}
FIELDS = [
    "task",
    "seed",
    "method",
    "tag",
    *METRICS,
    "seconds",
    "train_seconds",
    "peak_mb",
    "n_ref",
    "n_query",
    "config",
    "timestamp",
]
START, END = "<!-- core-quality:start -->", "<!-- core-quality:end -->"


def append_row(path: Path, row: dict) -> None:
    """Append ``row`` to ``path``; a new file gets ``FIELDS``, an existing one keeps its header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if new:
        fields = FIELDS
    else:
        with path.open(newline="") as fh:
            fields = next(csv.reader(fh))
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except Exception:  # noqa: BLE001 - no way to read RSS here
            return None


class PeakMemory:
    """Context manager: peak RSS of this process above its RSS at entry, in MiB, sampled every ``interval`` s.

    ``peak_mb`` is NaN where RSS cannot be read.
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.peak_mb = float("nan")

    def _sample(self):
        while not self._stop.wait(self.interval):
            rss = _rss_bytes()
            if rss is not None:
                self._peak = max(self._peak, rss)

    def __enter__(self):
        self._start = _rss_bytes()
        if self._start is None:
            return self
        self._peak = self._start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._start is None:
            return False
        self._stop.set()
        self._thread.join()
        rss = _rss_bytes()
        if rss is not None:
            self._peak = max(self._peak, rss)
        self.peak_mb = (self._peak - self._start) / 2**20
        return False


def score(pred, truth, seed, labels=None) -> dict:
    return {k: float(v) for k, v in metrics.evaluate(pred, truth, k=10, seed=seed, labels=labels).items()}


#: Folder where trained models are kept (``--models``): a rerun with the same folder loads them instead
#: of training again, so inference options can be re-scored on the very same models.
MODELS: Path | None = None


def fit_spatialedm(ref, info, seed, model_kwargs=None, train_kwargs=None):
    """Train ``SpatialEDM`` on a copy of ``ref`` as every benchmark row does; ``(model, train_seconds)``.

    Seeds scvi-tools, torch and NumPy with ``seed`` first, so the same call gives the same model (training
    is deterministic on the CPU). With :data:`MODELS` set, a model saved there for the task and seed is
    loaded instead (its training time is read back from the saved history's sidecar file).
    """
    import scvi
    import torch

    from spatialedm import SpatialEDM

    folder = None
    if MODELS is not None:
        folder = MODELS / f"{info['name']}_seed{seed}"
        if (folder / "model.json").exists():
            ref = ref.copy()
            SpatialEDM.setup_anndata(
                ref, layer=info["layer"], spatial_key=info["spatial_key"], batch_key=info["batch_key"]
            )
            seconds = float((folder / "train_seconds.txt").read_text())
            return SpatialEDM.load(folder, adata=ref), seconds
    scvi.settings.seed = seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    ref = ref.copy()
    SpatialEDM.setup_anndata(
        ref, layer=info["layer"], spatial_key=info["spatial_key"], batch_key=info["batch_key"]
    )
    model = SpatialEDM(ref, **(model_kwargs or {}))
    t0 = time.perf_counter()
    model.train(**{"accelerator": "cpu", **(train_kwargs or {})})
    seconds = time.perf_counter() - t0
    if folder is not None:
        model.save(folder, overwrite=True)
        (folder / "train_seconds.txt").write_text(f"{seconds:.3f}")
    return model, seconds


#: Stochastic refinements drawn for the uncertainty and the distance-geometry consensus rows.
N_SAMPLES = 8


#: The model's layouts scored per task and seed (``--layouts`` picks some): the generator alone, the
#: default, the network without the reference's kNN placement mixed in, one posterior sample, and the
#: distance-geometry consensus of the default layout and ``N_SAMPLES`` samples.
LAYOUTS = {
    "spatialedm_generator": {"refine": False, "prior": None},
    "spatialedm_refined": {},
    "spatialedm_no_prior": {"prior": None},
    "spatialedm_sample": {"stochastic": True},
    "spatialedm_consensus": {"n_samples": N_SAMPLES, "consensus": True, "uncertainty": "samples"},
}


def run_spatialedm(ref, query, info, seed, model_kwargs, train_kwargs, truth, layouts=None):
    """Yield (method, prediction, seconds, train_seconds, extra columns) for the model's layouts.

    ``spatialedm_generator``: the generator alone; ``spatialedm_no_prior``: generator and refiner without the
    reference's kNN placement (the default before it was mixed in); ``spatialedm_refined``: the default layout, with the
    default per-cell uncertainty (expression neighbours' spread; its ``uncertainty_calibration`` against
    the truth is recorded); ``spatialedm_sample``: one stochastic refinement; ``spatialedm_consensus``:
    the distance-geometry consensus of the default layout and ``N_SAMPLES`` samples, with the samples'
    spread as its uncertainty.
    """
    model, train_seconds = fit_spatialedm(ref, info, seed, model_kwargs, train_kwargs)
    calls = {name: kwargs for name, kwargs in LAYOUTS.items() if name in (layouts or LAYOUTS)}
    for method, kwargs in calls.items():
        t0 = time.perf_counter()
        out = model.get_latent_coordinates(query, seed=seed, copy=True, **kwargs)
        seconds = time.perf_counter() - t0
        pred = np.asarray(out.obsm["X_spatialedm"], dtype=np.float64)
        extra = {}
        if "spatialedm_uncertainty" in out.obs:
            spread = out.obs["spatialedm_uncertainty"].to_numpy()
            extra["uncertainty_calibration"] = metrics.uncertainty_calibration(pred, truth, spread, seed=seed)
        yield method, pred, seconds, train_seconds, extra


def run_peer(name, reference, query, info, seed, kwargs):
    """Return the peer's layout of ``query`` (imports ``peers`` lazily: the peers are optional)."""
    from benchmarks import peers

    func, _ = peers.PEERS[name]
    return func(reference, query, info, seed, **kwargs)


def _reference_method(func, **extra):
    """A baseline that maps the query onto the reference: the task's keys, the seed, and ``extra``."""

    def run(reference, query, info, seed, truth):
        keys = {"spatial_key": info["spatial_key"], "layer": info["layer"], "batch_key": info["batch_key"]}
        out = func(reference, query, seed=seed, **keys, **extra)
        if isinstance(out, tuple):  # (layout, chosen parameters)
            return out[0], json.dumps(out[1], sort_keys=True)
        return out, ""

    return run


BASELINES = {
    "knn": ("knn_regression", _reference_method(baselines.knn_regression, return_params=True)),
    # The plain recipe a user would type (k = 10, scanpy's default 50 PCs capped by the genes), without
    # selection: the selection keeps it unless the reference clearly favours another setting.
    "knn10": (
        "knn_regression_k10",
        _reference_method(
            baselines.knn_regression,
            n_neighbors=baselines.DEFAULT_NEIGHBORS,
            n_comps=baselines.DEFAULT_COMPS,
            return_params=True,
        ),
    ),
    "nn1": ("nearest_neighbor", _reference_method(baselines.nearest_neighbor)),
    "ot": ("optimal_transport", _reference_method(baselines.optimal_transport)),
    "pca": (
        "expression_pca",
        lambda r, q, info, seed, t: (baselines.expression_pca(q, dim=info["dim"], layer=info["layer"]), ""),
    ),
    "random": (
        "random",
        lambda r, q, info, seed, t: (baselines.random_layout(q, dim=info["dim"], seed=seed), ""),
    ),
    "uniform": (
        "uniform_fill",
        lambda r, q, info, seed, t: (metrics.uniform_fill(t, seed=seed), "shape floor"),
    ),
}


def run_task(name, seed, methods, out, tag, model_kwargs, train_kwargs, peer_kwargs=None, layouts=None):
    reference, query, info = load_task(name, seed=seed)
    truth = np.asarray(query.obsm[info["spatial_key"]], dtype=np.float64).copy()
    labels = query.obs[info["labels_key"]].to_numpy() if info.get("labels_key") else None
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

    def record(
        method, pred, seconds, train_seconds=float("nan"), config="", tag="", peak_mb=float("nan"), extra=None
    ):
        row = {
            **base,
            "method": method,
            "tag": tag,
            **score(pred, truth, seed, labels),
            **(extra or {}),
            "seconds": round(seconds, 3),
            "train_seconds": round(train_seconds, 3) if np.isfinite(train_seconds) else "",
            "peak_mb": round(peak_mb, 1) if np.isfinite(peak_mb) else "",
            "config": config,
            "timestamp": dt.datetime.now().isoformat(timespec="seconds"),
        }
        append_row(out, row)
        print(
            f"  {method:22s} cellwise {row['cellwise_spearman']:.3f}  patch_jaccard {row['patch_jaccard']:.3f}  "
            f"sliced-W {row['sliced_wasserstein']:.3f}  1-NN ratio {row['nn_distance_ratio']:.2f}  coverage "
            f"{row['coverage_recall']:.2f}/{row['coverage_precision']:.2f}  ({seconds:.1f} s, peak {peak_mb:.0f} MB)",
            flush=True,
        )

    peer_kwargs = peer_kwargs or {}
    for m in methods:
        try:
            if m in BASELINES:
                label, func = BASELINES[m]
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    pred, config = func(reference, query_in, info, seed, truth)
                    seconds = time.perf_counter() - t0
                record(label, pred, seconds, config=config, peak_mb=mem.peak_mb)
            elif m in PEERS:
                kwargs = peer_kwargs.get(m, {})
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    pred = run_peer(m, reference, query_in, info, seed, kwargs)
                    seconds = time.perf_counter() - t0
                record(m, pred, seconds, config=json.dumps(kwargs, sort_keys=True), peak_mb=mem.peak_mb)
            elif m == "spatialedm":
                config = json.dumps({"model": model_kwargs, "train": train_kwargs}, sort_keys=True)
                with PeakMemory() as mem:
                    results = list(
                        run_spatialedm(
                            reference, query_in, info, seed, model_kwargs, train_kwargs, truth, layouts
                        )
                    )
                for method, pred, seconds, train_seconds, extra in results:
                    record(
                        method, pred, seconds, train_seconds, config, tag, peak_mb=mem.peak_mb, extra=extra
                    )
        except Exception:  # noqa: BLE001 - keep going with the other methods and tasks
            print(f"  ! {m} failed on {name} seed {seed}:", flush=True)
            traceback.print_exc()


def machine() -> str:
    proc = platform.processor() or platform.machine()
    return f"{platform.system()} {proc}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def _pooled(csv_paths) -> pd.DataFrame:
    paths = [csv_paths] if isinstance(csv_paths, str | Path) else list(csv_paths)
    df = pd.concat([pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in paths], ignore_index=True)
    for col in ("peak_mb", *METRICS):
        if col not in df:
            df[col] = np.nan
    df["tag"] = df["tag"].fillna("").astype(str)
    # a rerun of the same (task, seed, method, tag) replaces the earlier row (later files win)
    df = df.drop_duplicates(["task", "seed", "method", "tag"], keep="last")
    df["label"] = np.where(df["tag"] == "", df["method"], df["method"] + " [" + df["tag"] + "]")
    return df


def _cell(v) -> str:
    v = v.astype(float).dropna()
    if not len(v):
        return ""
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


#: Not competitors: the floors (random coordinates; the uniform fill is built from the truth itself).
FLOORS = {"random", "uniform_fill"}


def summary_table(csv_paths: Path | list[Path], tasks: list[str] | None = None) -> str:
    """Two markdown tables (mean ± std over seeds) of one or several result CSVs: agreement and shape.

    ``vs best`` is a row's mean cellwise Spearman over the best mean of the methods that are not
    spatialedm and not a floor, on the same task (the target of spatialedm's rows is ≥ 1.1); ``patch vs
    best`` the same for patch_jaccard (target ≥ 1).
    """
    df = _pooled(csv_paths)
    order = [t for t in (tasks or list(dict.fromkeys(df["task"]))) if t in set(df["task"])]
    agree = [
        "| task | method | n seeds | "
        + " | ".join(SUMMARY_METRICS)
        + " | vs best | patch vs best | seconds | peak MB |",
        "|---|---|---|" + "---|" * len(SUMMARY_METRICS) + "---|---|---|---|",
    ]
    shape = [
        "| task | method | " + " | ".join(SHAPE_METRICS) + " |",
        "|---|---|" + "---|" * len(SHAPE_METRICS),
    ]
    for task in order:
        sub = df[df["task"] == task]
        means = sub.groupby("label")["cellwise_spearman"].mean()
        patches = sub.groupby("label")["patch_jaccard"].mean()
        others = [m for m in means.index if not m.startswith("spatialedm") and m not in FLOORS]
        best = means[others].max() if others else np.nan
        best_patch = patches[others].max() if others else np.nan
        for label, g in sub.groupby("label", sort=False):
            sec = g["seconds"].astype(float) + g["train_seconds"].astype(float).fillna(0.0)
            mem = g["peak_mb"].astype(float).dropna()
            ratio = "" if label in FLOORS or not np.isfinite(best) else f"{means[label] / best:.2f}"
            pratio = (
                "" if label in FLOORS or not np.isfinite(best_patch) else f"{patches[label] / best_patch:.2f}"
            )
            agreement = (
                ["—"] * len(SUMMARY_METRICS)
                if label == "uniform_fill"
                else [_cell(g[m]) for m in SUMMARY_METRICS]
            )
            agree.append(
                f"| {task} | {label} | {len(g)} | "
                + " | ".join(agreement)
                + f" | {ratio} | {pratio} | {sec.mean():.1f} | {f'{mem.mean():.0f}' if len(mem) else ''} |"
            )
            if g["sliced_wasserstein"].notna().any():
                shape.append(f"| {task} | {label} | " + " | ".join(_cell(g[m]) for m in SHAPE_METRICS) + " |")
    return (
        "\n".join(agree)
        + "\n\nShape (after unit-RMS scaling and orthogonal alignment onto the truth; ideal: sliced-W 0, "
        "1-NN ratio 1, CV excess 0, coverage 1, enrichment agreement 1):\n\n" + "\n".join(shape)
    )


PEER_NAMES = {"tangram", "novosparc", "celery"}
TASK_TITLES = {
    "osmfish_halves": "osmFISH cortex, half held out (across the layers)",
    "osmfish_random": "osmFISH cortex, random 30% held out",
    "embryo_slab": "*Drosophila* embryo, end quarter held out (3-D)",
    "embryo_random": "*Drosophila* embryo, random 30% held out (3-D)",
    "starmap_section": "STARmap mPFC, one mouse held out",
    "dlpfc_section": "Visium DLPFC, one section held out",
    "merfish_section": "MERFISH hypothalamus, one section held out",
    "her2st_section": "HER2+ tumour (legacy ST, 3,000 genes), one section held out",
    "osmfish_spots": "osmFISH halves, reference pooled into spots of ~8 cells",
    "starmap_spots": "STARmap section, reference pooled into spots of ~8 cells",
    "merfish_spots": "MERFISH section, reference pooled into spots of ~8 cells",
    "osmfish_shift": "osmFISH halves, query thinned with per-gene capture factors",
    "starmap_shift": "STARmap section, query thinned with per-gene capture factors",
    "merfish_shift": "MERFISH section, query thinned with per-gene capture factors",
}


def readme_table(csv_paths, tasks: list[str] | None = None) -> str:
    """The README's compact table: spatialedm's default layout against the best baseline and peer per task."""

    def cell(g):
        return f"{g['cellwise_spearman'].mean():.3f} / {g['patch_jaccard'].mean():.3f}"

    df = _pooled(csv_paths)
    order = [t for t in (tasks or list(dict.fromkeys(df["task"]))) if t in set(df["task"])]
    lines = [
        "| task | spatialedm | best baseline | best peer | spatialedm / best other (cellwise) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for task in order:
        sub = df[df["task"] == task]
        means = sub.groupby("label")["cellwise_spearman"].mean()
        own = sub[sub["label"] == "spatialedm_refined"]
        base = [m for m in means.index if not m.startswith("spatialedm") and m not in FLOORS | PEER_NAMES]
        peers = [m for m in means.index if m in PEER_NAMES]
        if own.empty or not base:
            continue
        b = means[base].idxmax()
        best_peer = (
            f"{cell(sub[sub['label'] == means[peers].idxmax()])} ({means[peers].idxmax()})" if peers else "—"
        )
        best_other = means[[*base, *peers]].max()
        lines.append(
            f"| {TASK_TITLES.get(task, task)} | {cell(own)} | {cell(sub[sub['label'] == b])} ({b}) | {best_peer} "
            f"| {means['spatialedm_refined'] / best_other:.2f} | {len(own)} |"
        )
    return "\n".join(lines)


def _rel(path: Path) -> Path:
    try:
        return path.resolve().relative_to(REPO)
    except ValueError:
        return path


def write_summary(csv_paths: Path | list[Path], md_path: Path, tasks: list[str] | None, command: str) -> str:
    paths = [csv_paths] if isinstance(csv_paths, str | Path) else list(csv_paths)
    table = summary_table(paths, tasks)
    csv_rel = "`, `".join(str(_rel(p)) for p in paths)
    block = "\n".join(
        [
            START,
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine()}  ",
            f"Date: {dt.date.today().isoformat()}  ",
            f"Raw rows: `{csv_rel}`. Mean ± std over seeds (sample std); seconds = fit + inference "
            "(for spatialedm, training included); peak MB = peak RSS of the process during the method above "
            "its RSS at the method's start. The seed changes random splits, model training and the metrics' "
            "subsampling; the baselines on spatial/section splits are deterministic (their spread is "
            "subsampling noise only). `uniform_fill` is the shape floor, built from the truth's bounding box.",
            "",
            table,
            "",
            END,
        ]
    )
    replace_block(md_path, START, END, block, heading="## Core quality (held-out reconstruction)")
    readme = REPO / "README.md"
    if md_path.resolve() == (REPO / "benchmarks" / "RESULTS.md").resolve() and readme.exists():
        start, end = "<!-- readme-table:start -->", "<!-- readme-table:end -->"
        if start in readme.read_text():
            note = f"Written by `{command}` from [`benchmarks/RESULTS.md`](benchmarks/RESULTS.md)'s rows."
            replace_block(readme, start, end, f"{start}\n\n{note}\n\n{readme_table(paths, tasks)}\n\n{end}")
    return table


def replace_block(md_path: Path, start: str, end: str, block: str, heading: str | None = None) -> None:
    """Put ``block`` (which begins with ``start`` and ends with ``end``) in place of the old one in ``md_path``.

    Without the markers in the file the block is appended, under ``heading`` when given.
    """
    text = md_path.read_text() if md_path.exists() else "# spatialedm benchmark results\n"
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + (f"{heading}\n\n" if heading else "") + block + "\n"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text)


def saved_models(models: Path, tasks, seeds, with_reference: bool = False):
    """Yield ``(task, seed, model, query, truth, info)`` for each model ``run_core --models`` saved there.

    The query comes without its coordinates (``truth`` holds them); missing models are reported and skipped.
    With ``with_reference``, the model is loaded with its task's reference registered (as after training).
    """
    from spatialedm import SpatialEDM

    for name in tasks:
        for seed in seeds:
            folder = models / f"{name}_seed{seed}"
            if not (folder / "model.json").exists():
                print(f"[{name} seed={seed}] no saved model in {folder}; skipped", flush=True)
                continue
            ref, query, info = load_task(name, seed=seed)
            truth = np.asarray(query.obsm[info["spatial_key"]], dtype=float)
            del query.obsm[info["spatial_key"]]
            if with_reference:
                SpatialEDM.setup_anndata(
                    ref, layer=info["layer"], spatial_key=info["spatial_key"], batch_key=info["batch_key"]
                )
            yield (
                name,
                seed,
                SpatialEDM.load(folder, adata=ref if with_reference else None),
                query,
                truth,
                info,
            )


def study_parser(description: str, default_out: Path) -> argparse.ArgumentParser:
    """Command line of an inference-only study on the models ``run_core --models`` saved."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--models", type=Path, required=True, help="folder of the models saved by run_core --models"
    )
    p.add_argument("--tasks", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", type=Path, default=default_out)
    p.add_argument("--results-md", type=Path, default=RESULTS.parent / "RESULTS.md")
    return p


def run_chains(
    models: Path, tasks, seeds, out: Path, chains, place, columns, with_reference: bool = False
) -> pd.DataFrame:
    """Place each saved model's query once per chain, score it with ``metrics.evaluate``, write the rows.

    ``chains`` holds ``(label, options)`` pairs; ``place(model, query, info, seed, options)`` returns the
    layout (its time is the row's ``seconds``). Prints one line per row with ``columns``.
    """
    rows = []
    for name, seed, model, query, truth, info in saved_models(models, tasks, seeds, with_reference):
        labels = query.obs[info["labels_key"]].to_numpy() if info.get("labels_key") else None
        for label, options in chains:
            t0 = time.perf_counter()
            pred = np.asarray(place(model, query, info, seed, options), dtype=float)
            seconds = time.perf_counter() - t0
            scores = metrics.evaluate(pred, truth, seed=seed, labels=labels)
            rows.append(
                {
                    "task": name,
                    "seed": seed,
                    "chain": label,
                    "options": json.dumps(options),
                    **scores,
                    "seconds": seconds,
                }
            )
            print(
                f"[{name} seed={seed}] {label:36s} "
                + "  ".join(f"{c} {scores.get(c, float('nan')):.3f}" for c in columns),
                flush=True,
            )
    df = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df


def chain_table(df: pd.DataFrame, columns) -> str:
    """Mean ± sd over seeds per task and chain, and each chain's paired cell-wise difference from the
    task's first chain (the default)."""
    lines = [
        "| task | chain | n seeds | " + " | ".join(columns) + " | cellwise − default |",
        "|---|---|---|" + "---|" * (len(columns) + 1),
    ]
    for task, g in df.groupby("task", sort=False):
        base = g[g["chain"] == g["chain"].iloc[0]].set_index("seed")["cellwise_spearman"]
        for chain, c in g.groupby("chain", sort=False):
            cells = [
                f"{c[k].mean():.3f} ± {c[k].std(ddof=0):.3f}" if c[k].notna().any() else "" for k in columns
            ]
            diff = c.set_index("seed")["cellwise_spearman"] - base
            cells.append(f"{diff.mean():+.3f} ± {diff.std(ddof=0):.3f}")
            lines.append(f"| {task} | {chain} | {len(c)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_main(argv, description: str, default_out: Path, run, table, marker: str, heading: str, module: str):
    """Command line of an inference-only study: ``run(models, tasks, seeds, out)``, then its ``table``
    written into RESULTS.md between the study's markers (with the command) and printed."""
    args = study_parser(description, default_out).parse_args(argv)
    df = run(args.models, args.tasks, args.seeds, args.out)
    if df.empty:
        return
    out = args.out.resolve()
    raw_rows = str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(args.out)
    write_study_block(
        args.results_md, marker, heading, module, argv or sys.argv[1:], args.models, raw_rows, table(df)
    )
    print(table(df))


def chain_study_main(argv, description: str, name: str, chains, place, columns, heading: str, module: str):
    """Command line of an inference-only study that places each saved model's query once per chain
    (loaded with its reference) and writes ``results/study/NAME.csv`` and the ``NAME`` block of RESULTS.md."""

    def run(models, tasks, seeds, out):
        return run_chains(models, tasks, seeds, out, chains, place, columns, with_reference=True)

    study_main(
        argv,
        description,
        RESULTS / "study" / f"{name}.csv",
        run,
        lambda df: chain_table(df, columns),
        name,
        heading,
        module,
    )


def write_study_block(
    md_path: Path, marker: str, heading: str, module: str, argv, models: Path, raw_rows: str, table: str
) -> None:
    """Write an inference-only study's table, with its command, machine and date, between its markers.

    The models folder is the user's own, so the command names it ``MODELS`` as run_core's docs do.
    """
    argv = [("MODELS" if a == str(models) else a) for a in argv]
    command = f"python -m {module} " + " ".join(argv)
    block = "\n".join(
        [
            f"Command: `{command}` (inference only, on the models `run_core --models MODELS` trained)  ",
            f"Machine: {machine()}  ",
            f"Date: {dt.date.today().isoformat()}  ",
            f"Raw rows: `{raw_rows}`.",
            "",
            table,
        ]
    )
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    replace_block(md_path, start, end, f"{start}\n\n{block}\n\n{end}", heading=heading)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=CORE_TASKS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--methods",
        nargs="+",
        default=["spatialedm", "knn", "nn1", "ot", "pca", "uniform"],
        choices=["spatialedm", *BASELINES, *PEERS],
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="CSV the rows are appended to (default: benchmarks/results/core.csv, or "
        "benchmarks/results/peers.csv when a peer is among --methods)",
    )
    p.add_argument(
        "--csv",
        type=Path,
        nargs="+",
        default=None,
        help="CSVs pooled by the summary (default: --out)",
    )
    p.add_argument(
        "--peer-kwargs",
        default="{}",
        help='JSON dict {peer: {kwarg: value}} passed to the peer functions, e.g. \'{"celery": {"batch_size": 32}}\'',
    )
    p.add_argument("--model-kwargs", default="{}", help="JSON dict passed to SpatialEDM(ref, **kwargs)")
    p.add_argument("--train-kwargs", default="{}", help="JSON dict passed to model.train(**kwargs)")
    p.add_argument(
        "--tag",
        default="",
        help="label stored with the spatialedm rows (e.g. a config name), shown beside the method name",
    )
    p.add_argument("--summary", action="store_true", help="write the markdown summary after running")
    p.add_argument(
        "--tiny", action="store_true", help="smoke run: tiny model, 3 short epochs, osmfish_halves seed 0"
    )
    p.add_argument("--summary-only", action="store_true", help="only write the summary from --out")
    p.add_argument(
        "--models",
        type=Path,
        default=None,
        help="folder to keep the trained models in; a saved model for a task and seed is loaded, not retrained",
    )
    p.add_argument("--results-md", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    p.add_argument(
        "--layouts",
        nargs="+",
        choices=list(LAYOUTS),
        default=None,
        help="the spatialedm layouts scored (default: all; the sample and consensus rows cost the most)",
    )
    args = p.parse_args(argv)

    if args.out is None:
        args.out = RESULTS / ("peers.csv" if set(args.methods) & set(PEERS) else "core.csv")
    command = "python -m benchmarks.run_core " + shlex.join(sys.argv[1:] if argv is None else argv)
    global MODELS
    MODELS = args.models
    if not args.summary_only:
        model_kwargs = json.loads(args.model_kwargs)
        train_kwargs = json.loads(args.train_kwargs)
        if args.tiny:
            model_kwargs, train_kwargs = {**TINY_MODEL, **model_kwargs}, {**TINY_TRAIN, **train_kwargs}
            args.tasks, args.seeds = ["osmfish_halves"], [0]
        peer_kwargs = json.loads(args.peer_kwargs)
        unknown = set(peer_kwargs) - set(PEERS)
        if unknown:
            p.error(f"--peer-kwargs names unknown peers {sorted(unknown)}; choose from {PEERS}")
        for name in args.tasks:
            for seed in args.seeds:
                try:
                    run_task(
                        name,
                        seed,
                        args.methods,
                        args.out,
                        args.tag,
                        model_kwargs,
                        train_kwargs,
                        peer_kwargs,
                        args.layouts,
                    )
                except FileNotFoundError as err:
                    print(f"[{name}] skipped: {err}", flush=True)
                    break
    if args.summary or args.summary_only:
        paths = [p_ for p_ in (args.csv or [args.out]) if p_.exists()]
        if not paths:
            print(f"No results at {args.csv or args.out}; nothing to summarise.")
            return
        print(write_summary(paths, args.results_md, args.tasks, command))


if __name__ == "__main__":
    main()
