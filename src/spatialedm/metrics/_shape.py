"""Shape (realism) metrics: the predicted point cloud judged as a tissue rather than as a ranking.

:func:`sliced_wasserstein`, :func:`nn_distance_ratio`, :func:`nn_cv_excess` and :func:`coverage` compare
both layouts after a common normalisation (centred, unit RMS radius, ``pred`` rotated/reflected onto
``true``); :func:`nhood_enrichment_agreement` compares cell-type neighbourhood enrichment; the floor that a
useful layout must beat is :func:`uniform_fill`.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.spatial import cKDTree

from . import _common
from ._common import _as_coords, _centre, _check_k, _orthogonal_align, _prepare


def _shape_align(pred, true) -> tuple[np.ndarray, np.ndarray]:
    """Both layouts as shapes: centred, scaled to unit RMS radius, ``pred`` rotated/reflected onto ``true``.

    The RMS radius is ``sqrt(mean ||x_i||²)`` after centring. A ``pred`` collapsed to a single point
    stays at the origin (it has no shape to rescale or rotate).
    """
    p, t = _prepare(pred, true)
    # exact test for "all cells at one position": no column varies at all
    if np.ptp(t, axis=0).max() == 0:
        raise ValueError("`true` has zero spread (all cells at one position).")
    t = _centre(t)
    t /= np.sqrt((t**2).sum(axis=1).mean())
    if np.ptp(p, axis=0).max() == 0:
        return np.zeros_like(p), t
    p = _centre(p)
    p /= np.sqrt((p**2).sum(axis=1).mean())
    r, _ = _orthogonal_align(p, t)
    return p @ r, t


def _nn_distances(x: np.ndarray) -> np.ndarray:
    """Distance of each cell to its nearest other cell; an exact duplicate counts as distance 0."""
    # the two nearest hits are the cell itself and its nearest other cell (both at 0 for a duplicate)
    dist, _ = cKDTree(x).query(x, k=2)
    return dist[:, 1]


def _cv(x: np.ndarray) -> float:
    """Coefficient of variation std / mean; NaN when the mean is 0."""
    mean = float(x.mean())
    return float(x.std() / mean) if mean > 0 else float("nan")


def _sliced_wasserstein_core(p: np.ndarray, t: np.ndarray, n_directions: int, seed: int) -> float:
    n, d = p.shape
    n_directions = int(n_directions)
    if n_directions < 1:
        raise ValueError(f"`n_directions` must be at least 1, got {n_directions}.")
    dirs = np.random.default_rng(seed).standard_normal((n_directions, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    # a chunk of directions at a time keeps the (n, chunk) projections near _CHUNK_ELEMENTS
    chunk = max(1, _common._CHUNK_ELEMENTS // n)
    total = 0.0
    for lo in range(0, n_directions, chunk):
        u = dirs[lo : lo + chunk].T
        diff = np.sort(p @ u, axis=0) - np.sort(t @ u, axis=0)
        total += float((diff**2).sum())
    return float(np.sqrt(total / (n * n_directions)))


def _coverage_core(p: np.ndarray, t: np.ndarray, nn_t: np.ndarray, factor: float) -> dict[str, float]:
    factor = float(factor)
    if not factor > 0:
        raise ValueError(f"`factor` must be positive, got {factor}.")
    # small slack so that coinciding points still match after the floating-point alignment
    r = factor * float(np.median(nn_t)) + 1e-12
    d_true, _ = cKDTree(p).query(t, k=1)
    d_pred, _ = cKDTree(t).query(p, k=1)
    return {
        "coverage_recall": float(np.mean(d_true <= r)),
        "coverage_precision": float(np.mean(d_pred <= r)),
    }


def _morton_order(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Order of the rows of ``x`` along a Z-order (Morton) curve through the box [lo, hi]."""
    n, d = x.shape
    dims = min(d, 63)
    bits = max(1, min(20, 63 // dims))  # the interleaved code must fit in 64 bits
    span = np.where(hi > lo, hi - lo, 1.0)[:dims]
    q = np.clip(((x[:, :dims] - lo[:dims]) / span * 2**bits).astype(np.int64), 0, 2**bits - 1)
    q = q.astype(np.uint64)
    code = np.zeros(n, dtype=np.uint64)
    for b in range(bits):
        for j in range(dims):
            code |= ((q[:, j] >> np.uint64(b)) & np.uint64(1)) << np.uint64(b * dims + j)
    return np.argsort(code, kind="stable")


def _as_labels(labels, n: int):
    """Validated categorical labels of length n with unused categories dropped."""
    import pandas as pd

    if np.ndim(labels) != 1:
        raise ValueError(f"`labels` must be 1-D, got {np.ndim(labels)} dimensions.")
    cat = pd.Categorical(labels)
    if len(cat) != n:
        raise ValueError(f"`labels` must have one entry per cell ({n}), got {len(cat)}.")
    if cat.isna().any():
        raise ValueError("`labels` contains missing values.")
    cat = cat.remove_unused_categories()
    if len(cat.categories) < 2:
        raise ValueError(f"`labels` must have at least 2 categories, got {len(cat.categories)}.")
    return cat


def _nhood_zscore(coords: np.ndarray, cat, n_neighs: int, n_perms: int, seed: int) -> np.ndarray:
    """Squidpy neighbourhood-enrichment z-scores (n_categories, n_categories) on a throwaway AnnData."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc
    import squidpy as sq

    obs = pd.DataFrame({"labels": cat}, index=np.arange(len(cat)).astype(str))
    adata = ad.AnnData(obs=obs, obsm={"spatial": coords})
    # squidpy reports progress through scanpy's logging and spatialdata's logger: mute both meanwhile
    sd_logger = logging.getLogger("spatialdata._logging")
    verbosity, sd_level = sc.settings.verbosity, sd_logger.level
    sc.settings.verbosity = 0
    sd_logger.setLevel(logging.WARNING)
    try:
        knn = getattr(sq.gr, "spatial_neighbors_knn", None)  # squidpy >= 1.8 deprecates the generic call
        if knn is not None:
            knn(adata, spatial_key="spatial", n_neighs=n_neighs)
        else:
            sq.gr.spatial_neighbors(adata, spatial_key="spatial", coord_type="generic", n_neighs=n_neighs)
        sq.gr.nhood_enrichment(
            adata, cluster_key="labels", n_perms=n_perms, seed=seed, n_jobs=1, show_progress_bar=False
        )
    finally:
        sc.settings.verbosity = verbosity
        sd_logger.setLevel(sd_level)
    return np.asarray(adata.uns["labels_nhood_enrichment"]["zscore"], dtype=np.float64)


def sliced_wasserstein(pred, true, n_directions: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between the predicted and the true point cloud, as shapes.

    Both layouts are centred, scaled to unit RMS radius and ``pred`` is rotated/reflected onto ``true``.
    Both clouds are then projected on ``n_directions`` random unit directions (Gaussian draws,
    normalised, from a generator seeded with ``seed``); the sorted projections are compared and the
    result is ``sqrt(mean over directions of mean squared difference)``. Which cell sits where is
    ignored by the distance itself: this compares the distributions of points, e.g. a blob against a
    tissue section; only the orientation comes from the row pairing, through the Procrustes fit. Time
    is O(n log n · n_directions), memory O(n · chunk) with directions processed in chunks.

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true); must not be all identical.
    n_directions
        Number of random projection directions.
    seed
        Seed for the directions.

    Returns
    -------
    float
        Non-negative distance in units of the RMS radius; 0 for identical shapes, lower is better. A
        ``pred`` collapsed to a point scores about ``1 / sqrt(d)``; compare with
        ``sliced_wasserstein(uniform_fill(true), true)``, the floor.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import sliced_wasserstein
    >>> true = np.random.default_rng(0).uniform(size=(500, 2))
    >>> sliced_wasserstein(5.0 * true[:, ::-1] + 1.0, true) < 1e-12
    True
    >>> round(sliced_wasserstein(np.zeros((500, 2)), true), 1)
    0.7
    """
    p, t = _shape_align(pred, true)
    return _sliced_wasserstein_core(p, t, n_directions, seed)


def nn_distance_ratio(pred, true) -> float:
    """Median nearest-neighbour distance in ``pred`` over that in ``true``, after shape normalisation.

    Both layouts are centred and scaled to unit RMS radius first, so the ratio compares how densely
    cells are packed relative to the size of the whole layout. An exact duplicate cell has a
    nearest-neighbour distance of 0, a real packing. KD-trees make it O(n log n).

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true); must not be all identical.

    Returns
    -------
    float
        Ratio, ideally 1; below 1 cells are packed too tightly (e.g. a dense core with stray cells
        around it), above 1 too evenly spread. NaN when the median distance in ``true`` is 0.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import nn_distance_ratio
    >>> true = np.random.default_rng(0).uniform(size=(500, 2))
    >>> round(nn_distance_ratio(-3.0 * true, true), 6)
    1.0
    """
    p, t = _shape_align(pred, true)
    mt = float(np.median(_nn_distances(t)))
    return float(np.median(_nn_distances(p)) / mt) if mt > 0 else float("nan")


def nn_cv_excess(pred, true) -> float:
    """Coefficient of variation of nearest-neighbour distances in ``pred`` minus that in ``true``.

    The coefficient of variation (std / mean) of each cell's distance to its nearest other cell
    measures how irregular the spacing is; it is scale free, and computed after the same shape
    normalisation as the other shape metrics. KD-trees make it O(n log n).

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true); must not be all identical.

    Returns
    -------
    float
        Difference, ideally 0; above 0 the prediction has clumps and stray cells, below 0 it is more
        regular than the tissue. NaN when either mean distance is 0.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import nn_cv_excess
    >>> true = np.random.default_rng(0).uniform(size=(500, 2))
    >>> abs(nn_cv_excess(true + 2.0, true)) < 1e-12
    True
    """
    p, t = _shape_align(pred, true)
    return _cv(_nn_distances(p)) - _cv(_nn_distances(t))


def coverage(pred, true, factor: float = 2.0) -> dict[str, float]:
    """How much of the true tissue the prediction covers (recall), and how much of it lies on tissue (precision).

    After the shape normalisation (both centred and scaled to unit RMS radius, ``pred``
    rotated/reflected onto ``true``), let ``r = factor`` × the median nearest-neighbour distance in
    ``true``. Recall is the fraction of true cells with at least one predicted cell within ``r``;
    precision is the fraction of predicted cells with at least one true cell within ``r``. A shrunk
    blob has low recall, stray cells or filled-in holes lower precision. KD-trees make it O(n log n).

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true); must not be all identical.
    factor
        Matching radius in units of the median nearest-neighbour distance of ``true``.

    Returns
    -------
    dict[str, float]
        ``coverage_recall`` and ``coverage_precision``, each in [0, 1] (1 is best).

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import coverage
    >>> true = np.random.default_rng(0).uniform(size=(500, 2))
    >>> coverage(0.5 * true, true)
    {'coverage_recall': 1.0, 'coverage_precision': 1.0}
    >>> far = np.vstack([true[:-50], true[:50] + 10.0])  # 50 cells far off the tissue
    >>> coverage(far, true)["coverage_precision"] < 0.95
    True
    """
    p, t = _shape_align(pred, true)
    return _coverage_core(p, t, _nn_distances(t), factor)


def nhood_enrichment_agreement(
    pred, true, labels, n_neighs: int = 10, n_perms: int = 100, seed: int = 0
) -> float:
    """Agreement of cell-type neighbourhood enrichment computed on the predicted and the true layout.

    On each layout, :func:`squidpy.gr.spatial_neighbors` (``coord_type="generic"``, or its successor
    ``spatial_neighbors_knn`` where squidpy has it) builds the ``n_neighs``-nearest-neighbour graph
    and :func:`squidpy.gr.nhood_enrichment` computes the z-score of every pair of categories being
    neighbours (permutation test with ``n_perms`` label shuffles, seeded). The score is the Pearson
    correlation of the two z-score matrices over the upper triangle, diagonal included, using only
    entries finite in both. Both runs use a throwaway AnnData, with squidpy's progress output muted;
    caller data is not modified. The kNN graph does not change under rotation, reflection, translation
    or scale, so no alignment is needed. Needs the optional dependency squidpy
    (``pip install spatialedm[plot]``).

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true).
    labels
        Cell type (or any category) per cell, array-like of length n_cells with at least 2 categories
        and no missing values.
    n_neighs
        Neighbours per cell in the spatial graph, in [1, n_cells - 1].
    n_perms
        Number of label permutations for the z-scores.
    seed
        Seed for the permutations (the same for both layouts).

    Returns
    -------
    float
        Correlation in [-1, 1]; 1 means the same enrichment pattern. NaN when fewer than 2 entries are
        finite or either set of z-scores is constant.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import nhood_enrichment_agreement
    >>> true = np.random.default_rng(0).uniform(size=(200, 2))
    >>> labels = np.where(true[:, 0] < 0.5, "left", "right")
    >>> round(nhood_enrichment_agreement(2.0 * true, true, labels, n_perms=20), 6)
    1.0
    """
    try:
        with warnings.catch_warnings():
            # squidpy's docstring templating warns on import
            warnings.simplefilter("ignore", SyntaxWarning)
            import squidpy  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "nhood_enrichment_agreement needs squidpy; install it with `pip install spatialedm[plot]`."
        ) from err
    p, t = _prepare(pred, true)
    n = p.shape[0]
    cat = _as_labels(labels, n)
    n_neighs = _check_k(n_neighs, n, "n_neighs")
    n_perms = int(n_perms)
    if n_perms < 1:
        raise ValueError(f"`n_perms` must be at least 1, got {n_perms}.")
    z_pred = _nhood_zscore(p, cat, n_neighs, n_perms, seed)
    z_true = _nhood_zscore(t, cat, n_neighs, n_perms, seed)
    iu = np.triu_indices(z_true.shape[0])
    a, b = z_pred[iu], z_true[iu]
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    denom = np.sqrt((a**2).sum() * (b**2).sum())
    return float((a * b).sum() / denom) if a.size >= 2 and denom > 0 else float("nan")


def uniform_fill(true, seed: int = 0) -> np.ndarray:
    """The floor layout: as many cells as ``true``, drawn uniformly in its axis-aligned bounding box.

    This is the reference a reconstruction must beat on :func:`sliced_wasserstein` (and on coverage
    precision): it knows the extent of the tissue but nothing of its shape, holes or density. Score it
    like any prediction, e.g. ``sliced_wasserstein(uniform_fill(true), true)``.

    The shape metrics orient ``pred`` by a Procrustes fit that pairs row i with row i, and uniform
    draws carry no such pairing, so the fit would turn the fill by an arbitrary rotation (which can
    multiply the score of an elongated tissue tenfold). The drawn points are therefore assigned to the rows of ``true`` by
    their rank along a Z-order (Morton) curve through the box, which pairs nearby points and keeps the
    fill in the frame of ``true`` under that fit. The set of points is unchanged by this ordering.

    Parameters
    ----------
    true
        True coordinates, shape (n_cells, d).
    seed
        Seed for the uniform draws.

    Returns
    -------
    numpy.ndarray
        Coordinates, shape (n_cells, d), inside the bounding box of ``true``.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import uniform_fill
    >>> true = np.random.default_rng(0).normal(size=(100, 2))
    >>> fill = uniform_fill(true)
    >>> fill.shape, bool((fill >= true.min(0)).all() and (fill <= true.max(0)).all())
    ((100, 2), True)
    """
    t = _as_coords(true, "true")
    lo, hi = t.min(axis=0), t.max(axis=0)
    fill = np.random.default_rng(seed).uniform(lo, hi, size=t.shape)
    out = np.empty_like(fill)
    out[_morton_order(t, lo, hi)] = fill[_morton_order(fill, lo, hi)]
    return out
