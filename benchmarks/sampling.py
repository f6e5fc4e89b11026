"""Sampling study: one posterior sample, several Heun steps, consensus, against the deterministic layout.

Loads the models that ``run_core --models DIR`` trained (the core benchmark's models: defaults, one per
task and seed), places each task's query with several refiner settings and scores every layout with
:func:`spatialedm.metrics.evaluate` (agreement and shape). Inference only: nothing is retrained.

Example::

    python -m benchmarks.sampling --models /path/to/models --tasks osmfish_halves starmap_section --seeds 0
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.run_core import RESULTS, run_chains, study_main

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


def _place(model, query, info, seed, options):
    return model.get_latent_coordinates(query, seed=seed, key_added=None, **options)


def run(models: Path, tasks: list[str], seeds: list[int], out: Path) -> pd.DataFrame:
    return run_chains(models, tasks, seeds, out, CHAINS, _place, COLUMNS)


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
    study_main(
        argv, __doc__, RESULTS / "sampling.csv", run, table, "sampling", "## Sampling", "benchmarks.sampling"
    )


if __name__ == "__main__":
    main()
