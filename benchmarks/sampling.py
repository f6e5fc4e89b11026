"""Sampling study: one posterior sample, several Heun steps, consensus, against the deterministic layout.

Loads the models that ``run_core --models DIR`` trained (the core benchmark's models: defaults, one per
task and seed), places each task's query with several refiner settings and scores every layout with
:func:`spatialedm.metrics.evaluate` (agreement and shape). Inference only: nothing is retrained.

Example::

    python -m benchmarks.sampling --models /path/to/models --tasks osmfish_halves starmap_section --seeds 0
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks.run_core import RESULTS, saved_models, study_parser, write_study_block
from spatialedm import metrics

#: (label, get_latent_coordinates options)
CHAINS = [
    ("deterministic (default)", {}),
    ("generator", {"refine": False}),
    *[
        (
            f"sample, σ_start {s:g}, {n} step{'s' if n > 1 else ''}",
            {"stochastic": True, "sigma_start": s, "n_steps": n},
        )
        for s in (1.0, 2.0, 3.0)
        for n in (1, 4, 8)
    ],
    ("consensus of 8 samples", {"n_samples": 8, "consensus": True}),
]
COLUMNS = ["cellwise_spearman", "patch_jaccard", "sliced_wasserstein", "nn_distance_ratio", "coverage_recall"]


def run(models: Path, tasks: list[str], seeds: list[int], out: Path) -> pd.DataFrame:
    rows = []
    for name, seed, model, query, truth, info in saved_models(models, tasks, seeds):
        labels = query.obs[info["labels_key"]].to_numpy() if info.get("labels_key") else None
        for label, kwargs in CHAINS:
            t0 = time.perf_counter()
            pred = model.get_latent_coordinates(query, seed=seed, key_added=None, **kwargs)
            scores = metrics.evaluate(pred, truth, seed=seed, labels=labels)
            rows.append(
                {
                    "task": name,
                    "seed": seed,
                    "chain": label,
                    "options": json.dumps(kwargs),
                    **scores,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(
                f"[{name} seed={seed}] {label:36s} " + "  ".join(f"{c} {scores[c]:.3f}" for c in COLUMNS),
                flush=True,
            )
    df = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df


def table(df: pd.DataFrame) -> str:
    lines = [
        "| task | chain | n seeds | " + " | ".join(COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for (task, chain), g in df.groupby(["task", "chain"], sort=False):
        cells = [f"{g[c].mean():.3f}" for c in COLUMNS]
        lines.append(f"| {task} | {chain} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = study_parser(__doc__, RESULTS / "sampling.csv").parse_args(argv)
    df = run(args.models, args.tasks, args.seeds, args.out)
    if df.empty:
        return
    # the models folder is the user's own; the command names it as run_core's docs do
    write_study_block(
        args.results_md,
        "sampling",
        "## Sampling",
        "benchmarks.sampling",
        argv or sys.argv[1:],
        args.models,
        f"benchmarks/results/{args.out.name}",
        table(df),
    )
    print(table(df))


if __name__ == "__main__":
    main()
