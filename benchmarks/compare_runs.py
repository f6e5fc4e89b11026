"""Paired comparison of two spatialedm configurations run by ``run_core.py`` on the same tasks and seeds.

Rows are matched on (task, seed, method), so the difference removes the seed-to-seed spread that both
configurations share (the same split, and the same generator when only the refiner differs). Prints a
markdown table of mean values and mean paired differences, and writes it into ``benchmarks/RESULTS.md``
between ``<!-- compare:TAG:start -->`` and ``<!-- compare:TAG:end -->``.

Example (the normalisation comparison in RESULTS.md: 0.1.0's rows against today's)::

    python -m benchmarks.compare_runs --base benchmarks/results/archive_v0.1/core.csv \
        --other benchmarks/results/core.csv --tag 0.2.0 --base-label 0.1.0
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
METRICS = ("cellwise_spearman", "patch_jaccard")
logger = logging.getLogger("compare_runs")


def paired_table(
    base: pd.DataFrame,
    other: pd.DataFrame,
    tag: str,
    base_label: str = "default",
    metrics=METRICS,
    methods=None,
) -> str:
    """Markdown table: per task and spatialedm chain, base mean, other mean, mean paired difference ± std.

    ``methods`` keeps only those spatialedm rows (e.g. ``["spatialedm_refined"]``); ``None`` keeps all.
    """
    keys = ["task", "seed", "method"]
    columns = tuple(metrics)
    base = base[base["method"].str.startswith("spatialedm")].drop_duplicates(keys, keep="last")
    other = other[other["method"].str.startswith("spatialedm")].drop_duplicates(keys, keep="last")
    if methods:
        base, other = base[base["method"].isin(methods)], other[other["method"].isin(methods)]
    m = base.merge(other, on=keys, suffixes=("_base", "_other"))
    if m.empty:
        raise ValueError("no (task, seed, method) rows in common between the two CSVs.")
    header = "| task | chain | n seeds | " + " | ".join(
        f"{k} {base_label} | {k} [{tag}] | difference" for k in columns
    )
    lines = [header + " |", "|---|---|---|" + "---|---|---|" * len(columns)]
    for (task, method), g in m.groupby(["task", "method"], sort=False):
        cells = []
        for k in columns:
            d = g[f"{k}_other"] - g[f"{k}_base"]
            spread = f" ± {d.std(ddof=1):.3f}" if len(d) > 1 else ""
            cells.append(
                f"{g[f'{k}_base'].mean():.3f} | {g[f'{k}_other'].mean():.3f} | {d.mean():+.3f}{spread}"
            )
        chain = method.removeprefix("spatialedm_")
        lines.append(f"| {task} | {chain} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_block(md_path: Path, tag: str, block: str) -> None:
    from benchmarks.run_core import replace_block  # imports spatialedm, so only when writing

    start, end = f"<!-- compare:{tag}:start -->", f"<!-- compare:{tag}:end -->"
    replace_block(md_path, start, end, f"{start}\n\n{block}\n\n{end}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="CSV of the default configuration")
    p.add_argument("--other", type=Path, required=True, help="CSV of the configuration compared")
    p.add_argument("--tag", required=True, help="name of the compared configuration (as run_core.py --tag)")
    p.add_argument("--base-label", default="default", help="name of the base configuration in the header")
    p.add_argument("--metrics", nargs="+", default=list(METRICS), help="columns compared")
    p.add_argument("--methods", nargs="+", default=None, help="spatialedm rows compared (default all)")
    p.add_argument("--results-md", type=Path, default=REPO / "benchmarks/RESULTS.md")
    p.add_argument("--no-write", action="store_true", help="only print the table")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    table = paired_table(
        pd.read_csv(args.base), pd.read_csv(args.other), args.tag, args.base_label, args.metrics, args.methods
    )
    sys.stdout.write(table + "\n")
    if not args.no_write:
        # shlex.join quotes arguments with spaces, so the recorded command runs as printed
        command = "python -m benchmarks.compare_runs " + shlex.join(argv or sys.argv[1:])
        write_block(args.results_md, args.tag, f"Command: `{command}`\n\n{table}")
        logger.info("wrote the table to %s", args.results_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
