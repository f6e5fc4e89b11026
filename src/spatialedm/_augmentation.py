"""Count-level augmentation: copies of the reference as another assay, depth or resolution would measure it.

A model that has only seen its reference's spots (or cells, at its depth) learns that technology, not the
tissue: a query measured another way (single cells against a spot reference, a shallower scRNA-seq run,
genes captured with other efficiencies) reaches it as inputs it has never seen. Each *view* here is the
whole reference re-measured at random — every cell's counts binomially thinned to a random depth, every
gene scaled by a random capture factor — and then preprocessed exactly as a query is (library-size
normalisation to the reference's target, ``log1p``, each section centred on its own mean, the reference's
gene scale). Training sets draw their expression from a random view, their coordinates stay the truth.
"""

from __future__ import annotations

import logging

import numpy as np

from ._preprocessing import ExpressionView, dense_rows, log_normalize

logger = logging.getLogger(__name__)


def remeasure(
    counts: np.ndarray, rng: np.random.Generator, *, min_depth: float, capture_sd: float
) -> np.ndarray:
    """One random re-measurement of ``counts``: per-cell binomial thinning and per-gene capture factors.

    Parameters
    ----------
    counts
        ``(n, G)`` non-negative integer counts.
    rng
        Random generator.
    min_depth
        Each cell keeps a fraction of its counts drawn log-uniformly in ``[min_depth, 1]``.
    capture_sd
        Standard deviation of each gene's natural-log capture factor (``0``: none).

    Returns
    -------
    ``(n, G)`` float32 re-measured counts (no longer integers when ``capture_sd > 0``).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.full((2, 3), 100.0)
    >>> Y = remeasure(X, np.random.default_rng(0), min_depth=0.1, capture_sd=0.0)
    >>> bool((Y <= X).all() and (Y >= 0).all())
    True
    """
    n, n_genes = counts.shape
    depth = np.exp(rng.uniform(np.log(min_depth), 0.0, size=n))
    thinned = rng.binomial(np.rint(counts).astype(np.int64), depth[:, None]).astype(np.float32)
    if capture_sd > 0:
        thinned *= np.exp(rng.normal(0.0, capture_sd, size=n_genes)).astype(np.float32)[None, :]
    return thinned


def count_views(
    view: ExpressionView,
    n_views: int,
    rng: np.random.Generator,
    *,
    min_depth: float,
    capture_sd: float,
) -> list[np.ndarray]:
    """``n_views`` re-measured copies of a count reference, each preprocessed as a query would be.

    Parameters
    ----------
    view
        The reference seen through the model's fitted preprocessor (must hold counts).
    n_views
        Number of copies.
    rng
        Random generator.
    min_depth, capture_sd
        See :func:`remeasure`.

    Returns
    -------
    A list of ``(n_obs, n_genes)`` float32 model inputs, in the reference's cell order.
    """
    if not view.is_counts:
        raise ValueError("Count views need a reference of raw counts.")
    prep = view.preprocessor
    counts = dense_rows(view.X, np.arange(view.n_obs), view.match.columns)
    codes = view.batch_codes
    n_batch = len(view.batch_names)
    sizes = np.maximum(np.bincount(codes, minlength=n_batch), 1).astype(np.float32)[:, None]
    out = []
    for _ in range(n_views):
        lognorm = log_normalize(
            remeasure(counts, rng, min_depth=min_depth, capture_sd=capture_sd), prep.target_sum
        )
        # each section is centred on its own mean, as a query's batches are
        means = np.zeros((n_batch, lognorm.shape[1]), dtype=np.float32)
        np.add.at(means, codes, lognorm)
        lognorm -= (means / sizes)[codes]
        lognorm /= prep.scale[view.match.shared]
        full = np.zeros((view.n_obs, view.n_genes), dtype=np.float32)
        full[:, view.match.shared] = lognorm
        out.append(full)
    logger.info(
        "Training on the reference and %d re-measured copies (depth down to %g, capture sd %g).",
        n_views,
        min_depth,
        capture_sd,
    )
    return out
