"""Measurement shift: spot-level references, cells onto spots, and scRNA-seq-like queries.

Three task families (``benchmarks.tasks``), each scored like the core benchmark:

- *spot → spot*: ``her2st_section`` (legacy ST) and ``dlpfc_section`` (Visium), spot-level references and
  queries of the same technology;
- *cells onto spots*: ``osmfish_spots``, ``starmap_spots``, ``merfish_spots``, the reference pooled into
  Visium-like spots of ~8 cells (``spatialedm.datasets.pool_spots``), the query the held-out part's single
  cells;
- *platform shift*: ``osmfish_shift``, ``starmap_shift``, ``merfish_shift``, the query thinned to half its
  counts with per-gene capture factors measured on the osmFISH / scRNA-seq pair
  (``benchmarks.tasks.platform_shift``).

The rows come from ``run_core`` (any method, any CSV); this script only summarises them: the agreement and
shape tables of ``run_core.summary_table`` and a criteria table per task (spatialedm's default layout against
the best other method on cell-wise Spearman and patch Jaccard, and, on cells onto spots, against kNN
regression with the *cell-level* reference of the same split, read from the core baselines' rows).

Examples
--------
::

    python -m benchmarks.run_core --tasks osmfish_spots starmap_spots merfish_spots osmfish_shift \
        starmap_shift merfish_shift --seeds 0 1 2 --methods knn knn10 nn1 pca random uniform ot \
        --out benchmarks/results/shift_baselines.csv
    python -m benchmarks.run_core --tasks osmfish_spots starmap_spots merfish_spots osmfish_shift \
        starmap_shift merfish_shift --seeds 0 1 2 --methods spatialedm --models MODELS \
        --out benchmarks/results/shift_core.csv
    python -m benchmarks.shift_study --csv benchmarks/results/shift_baselines.csv \
        benchmarks/results/shift_core.csv
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
from pathlib import Path

import numpy as np

from benchmarks import run_core
from benchmarks.tasks import SHIFT_TASKS, SPOT_SPOT_TASKS, SPOT_TASKS

FAMILIES = {
    "spot → spot": list(SPOT_SPOT_TASKS),
    "cells onto spots": list(SPOT_TASKS),
    "platform shift": list(SHIFT_TASKS),
}
MARKER = "measurement-shift"
HEADING = "## Measurement shift: spot references, cells onto spots, scRNA-seq-like queries"
#: Rows of the core benchmark's baselines, for kNN with the cell-level reference of the same split.
CELL_LEVEL_ROWS = run_core.RESULTS / "baselines.csv"


def criteria_table(csv_paths, method: str = "spatialedm_refined") -> str:
    """Per task: ``method`` against the best other method (cell-wise Spearman, patch Jaccard), and on cells
    onto spots against kNN regression with the cell-level reference."""
    df = run_core._pooled(csv_paths)
    cell_level = run_core._pooled([CELL_LEVEL_ROWS]) if CELL_LEVEL_ROWS.exists() else None
    lines = [
        "| family | task | spatialedm | best other | vs best (≥ 1.0) | patch vs best (≥ 0.95) | vs kNN, cell-level reference (≥ 0.95) |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, tasks in FAMILIES.items():
        for task in tasks:
            sub = df[df["task"] == task]
            if sub.empty or method not in set(sub["label"]):
                continue
            means = sub.groupby("label")["cellwise_spearman"].mean()
            patches = sub.groupby("label")["patch_jaccard"].mean()
            others = [m for m in means.index if not m.startswith("spatialedm") and m not in run_core.FLOORS]
            if not others:
                continue
            best = means[others].idxmax()
            own = means[method]
            versus_cells = ""
            if task in SPOT_TASKS and cell_level is not None:
                base = cell_level[
                    (cell_level["task"] == SPOT_TASKS[task]) & (cell_level["label"] == "knn_regression")
                ]["cellwise_spearman"]
                if len(base):
                    versus_cells = f"{own / base.mean():.2f} ({base.mean():.3f})"
            lines.append(
                f"| {family} | {task} | {own:.3f} / {patches[method]:.3f} | {means[best]:.3f} / "
                f"{patches[others].max():.3f} ({best}) | {own / means[best]:.2f} | "
                f"{patches[method] / patches[others].max():.2f} | {versus_cells} |"
            )
    return "\n".join(lines)


def write_block(csv_paths, md_path: Path, command: str) -> str:
    tasks = [t for ts in FAMILIES.values() for t in ts]
    body = "\n".join(
        [
            f"Command: `{command}`  ",
            f"Machine: {run_core.machine()}  ",
            f"Date: {dt.date.today().isoformat()}  ",
            "Raw rows: " + ", ".join(f"`{run_core._rel(Path(p))}`" for p in csv_paths) + ".",
            "",
            criteria_table(csv_paths),
            "",
            run_core.summary_table(csv_paths, tasks),
        ]
    )
    start, end = f"<!-- {MARKER}:start -->", f"<!-- {MARKER}:end -->"
    run_core.replace_block(md_path, start, end, f"{start}\n\n{body}\n\n{end}", heading=HEADING)
    return body


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--csv", type=Path, nargs="+", required=True, help="run_core CSVs to pool (later files win)"
    )
    p.add_argument("--results-md", type=Path, default=run_core.RESULTS.parent / "RESULTS.md")
    args = p.parse_args(argv)
    paths = [c for c in args.csv if c.exists()]
    if not paths:
        print(f"No results at {args.csv}; nothing to summarise.")
        return
    command = "python -m benchmarks.shift_study " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(write_block(paths, args.results_md, command))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
