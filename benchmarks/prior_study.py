"""Prior study: the refiner correcting the reference's kNN placement, against the default and kNN alone.

Loads the models that ``run_core --models DIR`` trained (with their task's reference registered, as after
training), places each task's query with the default settings, with ``prior="knn"`` at two
``prior_weight`` values, and by :func:`spatialedm.baselines.knn_regression` alone (the prior itself), and
scores every layout with :func:`spatialedm.metrics.evaluate`. Inference only: nothing is retrained.

Example::

    python -m benchmarks.prior_study --models /path/to/models --tasks osmfish_halves her2st_section --seeds 0
"""

from __future__ import annotations

from benchmarks.run_core import chain_study_main
from spatialedm import baselines

#: (label, get_latent_coordinates options); ``None``: tuned kNN regression alone
CHAINS = [
    ("default", {}),
    ("prior knn, weight 0.5 (option)", {"prior": "knn"}),
    ("prior knn, weight 1", {"prior": "knn", "prior_weight": 1.0}),
    ("kNN regression alone", None),
]
COLUMNS = ["cellwise_spearman", "patch_jaccard", "sliced_wasserstein", "nn_distance_ratio", "coverage_recall"]


def _place(model, query, info, seed, kwargs):
    if kwargs is not None:
        return model.get_latent_coordinates(query, seed=seed, key_added=None, uncertainty=None, **kwargs)
    return baselines.knn_regression(
        model.adata,
        query,
        spatial_key=info["spatial_key"],
        layer=info["layer"],
        batch_key=info["batch_key"],
        seed=seed,
    )


def main(argv=None):
    chain_study_main(
        argv,
        __doc__,
        "prior",
        CHAINS,
        _place,
        COLUMNS,
        '## Refining the reference\'s kNN placement (`prior="knn"`)',
        "benchmarks.prior_study",
    )


if __name__ == "__main__":
    main()
