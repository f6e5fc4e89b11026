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
import warnings

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


def expression_programs(counts: np.ndarray, n_programs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative factorisation of library-normalised counts into expression programs (scikit-learn NMF).

    Parameters
    ----------
    counts
        ``(n, G)`` counts.
    n_programs
        Number of programs (capped by the data's shape).
    seed
        Seed of the factorisation.

    Returns
    -------
    ``(weights, programs)``: ``(n, K)`` share of each cell's counts that each program explains (rows sum
    to 1; uniform for cells without counts) and ``(K, G)`` programs as gene frequencies (rows sum to 1).
    """
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    totals = counts.sum(1, keepdims=True)
    freq = counts / np.maximum(totals, 1e-12)
    k = int(max(1, min(n_programs, *counts.shape)))
    nmf = NMF(n_components=k, init="nndsvda", max_iter=400, random_state=seed)
    with warnings.catch_warnings():
        # programs need only be roughly right: they steer augmentation, and a tolerance reached late changes
        # nothing the model can see
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        W = nmf.fit_transform(freq)
    H = nmf.components_
    mass = H.sum(1)
    programs = H / np.maximum(mass[:, None], 1e-12)
    weights = W * mass[None, :]
    row = weights.sum(1, keepdims=True)
    weights = np.where(row > 0, weights / np.maximum(row, 1e-12), 1.0 / k)
    return weights, programs


def split_cells(
    counts: np.ndarray, weights: np.ndarray, programs: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Replace each row by a cell-like sample of one of its programs, at the row's depth.

    Each row draws a purity ``a`` uniformly in ``[0, 1]`` and one program ``k`` with the probabilities of its
    ``weights``; its gene frequencies become ``a * programs[k] + (1 - a) * own frequencies`` and its counts a
    Poisson draw at its own library size. A spot (a mixture of cells) so yields a profile between itself
    and one of the cells it holds.

    Parameters
    ----------
    counts
        ``(n, G)`` counts.
    weights, programs
        From :func:`expression_programs`.
    rng
        Random generator.

    Returns
    -------
    ``(n, G)`` float32 counts.
    """
    totals = counts.sum(1, keepdims=True)
    freq = counts / np.maximum(totals, 1e-12)
    cum = np.cumsum(weights, axis=1)
    pick = (rng.random((len(counts), 1)) * cum[:, -1:] > cum).sum(1)
    pick = np.minimum(pick, programs.shape[0] - 1)
    a = rng.random((len(counts), 1))
    mixed = a * programs[pick] + (1 - a) * freq
    return rng.poisson(mixed * totals).astype(np.float32)


def count_views(
    view: ExpressionView,
    n_views: int,
    rng: np.random.Generator,
    *,
    min_depth: float,
    capture_sd: float,
    n_programs: int = 0,
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
    n_programs
        With ``n_programs > 0``, each copy first replaces every cell (spot) by a cell-like sample of one of
        its ``n_programs`` expression programs (:func:`split_cells`), before it is re-measured.

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
    if n_programs > 0:
        weights, programs = expression_programs(counts, n_programs, seed=int(rng.integers(2**31)))
    out = []
    for _ in range(n_views):
        source = split_cells(counts, weights, programs, rng) if n_programs > 0 else counts
        lognorm = log_normalize(
            remeasure(source, rng, min_depth=min_depth, capture_sd=capture_sd), prep.target_sum
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
