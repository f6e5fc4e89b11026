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
tangram     Tangram ``mode="cells"`` mapping (``peers.tangram_layout``) -> ``tangram``
novosparc   novoSpaRc reference-based fused Gromov-Wasserstein (``peers.novosparc_layout``) -> ``novosparc``
celery      CeLEry coordinate regression (``peers.celery_layout``) -> ``celery``

The peers are not dependencies of spatialedm (install them with ``benchmarks/requirements-peers.txt``);
``--peer-kwargs`` passes keyword arguments to their functions and is stored in the ``config`` column.

Resources
---------
Every row records ``seconds`` (wall time of the method's fit + inference; spatialedm's training time is
in ``train_seconds``) and, when written with ``FIELDS_MEM`` (any ``--out`` other than an existing CSV
with the old header), ``peak_mb``: the peak resident set size (RSS) of this Python process while the
method ran, minus its RSS when the method started, in MiB (2**20 bytes). RSS is sampled every 10 ms by a
background thread from ``/proc/self/statm`` (``psutil`` elsewhere); child processes (e.g. data-loader
workers) are not counted, and allocations shorter than the sampling interval can be missed. For
spatialedm, one peak covers training and both predictions and is stored on both rows.

Examples
--------
python benchmarks/quality/run_core.py --tasks osmfish_halves embryo_slab starmap_section \
    dlpfc_section merfish_section --seeds 0 1 2 --methods spatialedm knn pca \
    --out benchmarks/quality/results_core.csv --summary
python benchmarks/quality/run_core.py --summary-only --out benchmarks/quality/results_core.csv
.venv-bench/bin/python benchmarks/quality/run_core.py --tasks osmfish_halves --seeds 0 \
    --methods tangram novosparc celery knn pca random --out benchmarks/quality/results_peers.csv
python benchmarks/quality/run_core.py --summary-only \
    --csv benchmarks/quality/results_core.csv benchmarks/quality/results_peers.csv
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

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from spatialedm import baselines  # noqa: E402
from spatialedm.metrics import evaluate  # noqa: E402
from spatialedm.tasks import load_task  # noqa: E402

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
#: columns of CSVs that record memory (new files); files with the old header keep ``FIELDS``
FIELDS_MEM = [*FIELDS[: FIELDS.index("train_seconds") + 1], "peak_mb", *FIELDS[FIELDS.index("n_ref") :]]
START, END = "<!-- core-quality:start -->", "<!-- core-quality:end -->"


def append_row(path: Path, row: dict) -> None:
    """Append ``row`` to ``path``; a new file gets ``FIELDS_MEM``, an existing one keeps its header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if new:
        fields = FIELDS_MEM
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


def score(pred, truth, seed) -> dict:
    return {k: float(v) for k, v in evaluate(pred, truth, k=10, seed=seed).items()}


def fit_spatialedm(ref, info, seed, model_kwargs=None, train_kwargs=None):
    """Train ``SpatialEDM`` on a copy of ``ref`` as every benchmark row does; ``(model, train_seconds)``.

    Seeds scvi-tools, torch and NumPy with ``seed`` first, so the same call gives the same model (training
    is deterministic on the CPU); the study scripts use it to reproduce the core rows.
    """
    import scvi
    import torch

    from spatialedm import SpatialEDM

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
    return model, time.perf_counter() - t0


def run_spatialedm(ref, query, info, seed, model_kwargs, train_kwargs):
    """Yield (method, prediction, seconds, train_seconds); yields nothing if the model is unavailable."""
    try:  # the model's stack is optional for this script: check it before training
        import scvi  # noqa: F401
        import torch  # noqa: F401

        from spatialedm import SpatialEDM  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means "skip this method"
        print(f"  ! spatialedm is not importable ({type(err).__name__}: {err}); skipping it", flush=True)
        return
    model, train_seconds = fit_spatialedm(ref, info, seed, model_kwargs, train_kwargs)
    for method, refine in (("spatialedm_generator", False), ("spatialedm_refined", True)):
        t0 = time.perf_counter()
        pred = model.get_latent_coordinates(query, refine=refine, seed=seed, key_added=None)
        yield method, np.asarray(pred), time.perf_counter() - t0, train_seconds


def run_peer(name, reference, query, info, seed, kwargs):
    """Return the peer's layout of ``query`` (imports ``peers`` lazily: the peers are optional)."""
    if str(Path(__file__).resolve().parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peers

    func, _ = peers.PEERS[name]
    return func(reference, query, info, seed, **kwargs)


def run_task(name, seed, methods, out, tag, model_kwargs, train_kwargs, peer_kwargs=None):
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

    def record(method, pred, seconds, train_seconds=float("nan"), config="", tag="", peak_mb=float("nan")):
        row = {
            **base,
            "method": method,
            "tag": tag,
            **score(pred, truth, seed),
            "seconds": round(seconds, 3),
            "train_seconds": round(train_seconds, 3) if np.isfinite(train_seconds) else "",
            "peak_mb": round(peak_mb, 1) if np.isfinite(peak_mb) else "",
            "config": config,
            "timestamp": dt.datetime.now().isoformat(timespec="seconds"),
        }
        append_row(out, row)
        print(
            f"  {method:22s} cellwise_spearman {row['cellwise_spearman']:.3f}  patch_jaccard "
            f"{row['patch_jaccard']:.3f}  knn_jaccard {row['knn_jaccard']:.3f}  distance_spearman "
            f"{row['distance_spearman']:.3f}  ({seconds:.1f} s, peak {peak_mb:.0f} MB)",
            flush=True,
        )

    peer_kwargs = peer_kwargs or {}
    for m in methods:
        try:
            if m == "knn":
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    pred = baselines.knn_regression(
                        reference,
                        query_in,
                        spatial_key=info["spatial_key"],
                        layer=info["layer"],
                        batch_key=info["batch_key"],
                    )
                    seconds = time.perf_counter() - t0
                record("knn_regression", pred, seconds, peak_mb=mem.peak_mb)
            elif m == "pca":
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    pred = baselines.expression_pca(query_in, dim=info["dim"], layer=info["layer"])
                    seconds = time.perf_counter() - t0
                record("expression_pca", pred, seconds, peak_mb=mem.peak_mb)
            elif m == "random":
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    pred = baselines.random_layout(query_in, dim=info["dim"], seed=seed)
                    seconds = time.perf_counter() - t0
                record("random", pred, seconds, peak_mb=mem.peak_mb)
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
                        run_spatialedm(reference, query_in, info, seed, model_kwargs, train_kwargs)
                    )
                for method, pred, seconds, train_seconds in results:
                    record(method, pred, seconds, train_seconds, config, tag, peak_mb=mem.peak_mb)
        except Exception:  # noqa: BLE001 - keep going with the other methods and tasks
            print(f"  ! {m} failed on {name} seed {seed}:", flush=True)
            traceback.print_exc()


def machine() -> str:
    proc = platform.processor() or platform.machine()
    return f"{platform.system()} {proc}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def summary_table(csv_paths: Path | list[Path], tasks: list[str] | None = None) -> str:
    """Markdown table (mean ± std over seeds) of one or several result CSVs.

    Rows from all files are pooled; a rerun of the same (task, seed, method, tag) replaces the earlier
    row (later files win). ``peak MB`` is the mean of the recorded ``peak_mb`` values, blank where none
    was recorded (rows of CSVs with the old header).
    """
    import pandas as pd

    paths = [csv_paths] if isinstance(csv_paths, (str, Path)) else list(csv_paths)
    frames = [pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in paths]
    df = pd.concat(frames, ignore_index=True, sort=False)
    if "peak_mb" not in df:
        df["peak_mb"] = np.nan
    df["tag"] = df["tag"].fillna("").astype(str)
    df = df.drop_duplicates(["task", "seed", "method", "tag"], keep="last")
    df["label"] = np.where(df["tag"] == "", df["method"], df["method"] + " [" + df["tag"] + "]")
    order = [t for t in (tasks or list(dict.fromkeys(df["task"]))) if t in set(df["task"])]
    lines = [
        "| task | method | n seeds | " + " | ".join(SUMMARY_METRICS) + " | seconds | peak MB |",
        "|---|---|---|" + "---|" * len(SUMMARY_METRICS) + "---|---|",
    ]
    for task in order:
        sub = df[df["task"] == task]
        for label, g in sub.groupby("label", sort=False):
            cells = []
            for m in SUMMARY_METRICS:
                v = g[m].astype(float)
                cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}")
            sec = g["seconds"].astype(float) + g["train_seconds"].astype(float).fillna(0.0)
            mem = g["peak_mb"].astype(float).dropna()
            mem_cell = f"{mem.mean():.0f}" if len(mem) else ""
            lines.append(
                f"| {task} | {label} | {len(g)} | "
                + " | ".join(cells)
                + f" | {sec.mean():.1f} | {mem_cell} |"
            )
    return "\n".join(lines)


def _rel(path: Path) -> Path:
    try:
        return path.resolve().relative_to(REPO)
    except ValueError:
        return path


def write_summary(csv_paths: Path | list[Path], md_path: Path, tasks: list[str] | None, command: str) -> str:
    paths = [csv_paths] if isinstance(csv_paths, (str, Path)) else list(csv_paths)
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
            "its RSS at the method's start (blank where not recorded). The seed changes random splits, model training and the "
            "metrics' subsampling; the baselines on spatial/section splits are deterministic, so their spread "
            "is subsampling noise only.",
            "",
            table,
            "",
            END,
        ]
    )
    replace_block(md_path, START, END, block, heading="## Core quality (held-out reconstruction)")
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=CORE_TASKS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--methods",
        nargs="+",
        default=["spatialedm", "knn", "pca"],
        choices=["spatialedm", "knn", "pca", "random", *PEERS],
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="CSV the rows are appended to (default: benchmarks/quality/results_core.csv, or "
        "benchmarks/quality/results_peers.csv when a peer is among --methods)",
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
    p.add_argument("--summary-only", action="store_true", help="only write the summary from --out")
    p.add_argument("--results-md", type=Path, default=REPO / "benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    if args.out is None:
        name = "results_peers.csv" if set(args.methods) & set(PEERS) else "results_core.csv"
        args.out = REPO / "benchmarks/quality" / name
    command = "python " + shlex.join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])
    if not args.summary_only:
        model_kwargs = json.loads(args.model_kwargs)
        train_kwargs = json.loads(args.train_kwargs)
        peer_kwargs = json.loads(args.peer_kwargs)
        unknown = set(peer_kwargs) - set(PEERS)
        if unknown:
            p.error(f"--peer-kwargs names unknown peers {sorted(unknown)}; choose from {PEERS}")
        for name in args.tasks:
            for seed in args.seeds:
                try:
                    run_task(
                        name, seed, args.methods, args.out, args.tag, model_kwargs, train_kwargs, peer_kwargs
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
