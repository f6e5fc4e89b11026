"""Shape study: the layout moved towards the reference tissue's proportions (``shape_weight``).

Loads the models that ``run_core --models DIR`` trained (with their task's reference registered, as after
training), places each task's query with the default settings and with ``shape_weight`` 0.5 and 1, and
scores every layout with :func:`spatialedm.metrics.evaluate` (agreement and shape). Inference only:
nothing is retrained.

Example::

    python -m benchmarks.shape_study --models /path/to/models --tasks merfish_section embryo_slab --seeds 0
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.run_core import RESULTS, chain_table, run_chains, study_main

CHAINS = [
    ("default", {}),
    ("shape_weight 0.5", {"shape_weight": 0.5}),
    ("shape_weight 1", {"shape_weight": 1.0}),
]
COLUMNS = [
    "cellwise_spearman",
    "patch_jaccard",
    "sliced_wasserstein",
    "coverage_recall",
    "coverage_precision",
    "nhood_enrichment_agreement",
]


def _place(model, query, info, seed, kwargs):
    return model.get_latent_coordinates(query, seed=seed, key_added=None, uncertainty=None, **kwargs)


def run(models: Path, tasks: list[str], seeds: list[int], out: Path) -> pd.DataFrame:
    return run_chains(models, tasks, seeds, out, CHAINS, _place, COLUMNS, with_reference=True)


def table(df: pd.DataFrame) -> str:
    return chain_table(df, COLUMNS)


def main(argv=None):
    study_main(
        argv,
        __doc__,
        RESULTS / "study" / "shape.csv",
        run,
        table,
        "shape",
        "## Tissue proportions (`shape_weight`)",
        "benchmarks.shape_study",
    )


if __name__ == "__main__":
    main()
