"""Every layout metric at once, with default subsampling limits."""

from __future__ import annotations

import logging

import numpy as np

from ._agreement import (
    cellwise_spearman,
    distance_spearman,
    knn_jaccard,
    patch_jaccard,
    procrustes_disparity,
    scale_ratio,
    trustworthiness,
)
from ._common import _prepare
from ._shape import (
    _coverage_core,
    _cv,
    _nn_distances,
    _shape_align,
    _sliced_wasserstein_core,
    nhood_enrichment_agreement,
)

logger = logging.getLogger(__name__)


def evaluate(pred, true, k: int = 10, seed: int = 0, labels=None) -> dict[str, float]:
    """Compute every layout metric with default subsampling limits.

    ``k`` is lowered, with a logged warning, where a set is too small for it (``n_cells - 1`` for the
    Jaccard scores and the neighbourhood graph, below half the cells for trustworthiness). The shape
    metrics share one normalisation and one set of nearest-neighbour distances.

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true).
    k
        Neighbourhood size for knn_jaccard, patch_jaccard, trustworthiness and the neighbourhood graph
        of nhood_enrichment_agreement.
    seed
        Seed shared by all subsampling and random metrics.
    labels
        Optional cell type per cell (length n_cells, at least 2 categories); when given,
        ``nhood_enrichment_agreement`` is computed too (needs squidpy).

    Returns
    -------
    dict[str, float]
        Keys ``cellwise_spearman``, ``patch_jaccard``, ``knn_jaccard``, ``distance_spearman``,
        ``trustworthiness``, ``procrustes_disparity``, ``scale_ratio``, ``sliced_wasserstein``,
        ``nn_distance_ratio``, ``nn_cv_excess``, ``coverage_recall``, ``coverage_precision``, and
        ``nhood_enrichment_agreement`` when ``labels`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import evaluate
    >>> true = np.random.default_rng(0).normal(size=(300, 2))
    >>> scores = evaluate(true, true)
    >>> scores["knn_jaccard"], scores["cellwise_spearman"], scores["coverage_recall"]
    (1.0, 1.0, 1.0)
    """
    p, t = _prepare(pred, true)
    n = p.shape[0]
    k_j = min(int(k), n - 1)
    m_tw = min(n, 5000)
    k_tw = min(int(k), (m_tw - 1) // 2)
    if k_j != k or k_tw != k:
        logger.warning(
            "k=%d is too large for %d cells; using k=%d (Jaccard) and %d (trustworthiness).", k, n, k_j, k_tw
        )
    out = {
        "cellwise_spearman": cellwise_spearman(p, t, seed=seed),
        "patch_jaccard": patch_jaccard(p, t, k=k_j, seed=seed),
        "knn_jaccard": knn_jaccard(p, t, k=k_j),
        "distance_spearman": distance_spearman(p, t, seed=seed),
        "trustworthiness": trustworthiness(p, t, k=k_tw, seed=seed) if k_tw >= 1 else float("nan"),
        "procrustes_disparity": procrustes_disparity(p, t),
        "scale_ratio": scale_ratio(p, t),
    }
    ps, ts = _shape_align(p, t)
    nn_p, nn_t = _nn_distances(ps), _nn_distances(ts)
    med_t = float(np.median(nn_t))
    out["sliced_wasserstein"] = _sliced_wasserstein_core(ps, ts, 256, seed)
    out["nn_distance_ratio"] = float(np.median(nn_p) / med_t) if med_t > 0 else float("nan")
    out["nn_cv_excess"] = _cv(nn_p) - _cv(nn_t)
    out.update(_coverage_core(ps, ts, nn_t, 2.0))
    if labels is not None:
        out["nhood_enrichment_agreement"] = nhood_enrichment_agreement(p, t, labels, n_neighs=k_j, seed=seed)
    return out
