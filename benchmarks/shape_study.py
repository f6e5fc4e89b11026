"""Shape study: the layout moved towards the reference tissue's proportions (``shape_weight``).

Loads the models that ``run_core --models DIR`` trained (with their task's reference registered, as after
training), places each task's query with the default settings and with ``shape_weight`` 0.5 and 1, and
scores every layout with :func:`spatialedm.metrics.evaluate` (agreement and shape). Inference only:
nothing is retrained.

Example::

    python -m benchmarks.shape_study --models /path/to/models --tasks merfish_section embryo_slab --seeds 0
"""

from __future__ import annotations

from benchmarks.run_core import chain_study_main

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


def main(argv=None):
    chain_study_main(
        argv,
        __doc__,
        "shape",
        CHAINS,
        _place,
        COLUMNS,
        "## Tissue proportions (`shape_weight`)",
        "benchmarks.shape_study",
    )


if __name__ == "__main__":
    main()
