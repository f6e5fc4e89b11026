"""Layout metrics that compare predicted and true cell coordinates.

Every metric takes ``pred`` and ``true`` as arrays of shape (n_cells, d), d usually 2 or 3. ``pred``
may have a different number of columns than ``true`` (e.g. a 2-D prediction of a 3-D tissue): the
narrower array is zero-padded to the wider one first. All metrics except :func:`scale_ratio` are
invariant to rotation, reflection, translation and global scale of ``pred``, since absolute position,
orientation and size of a reconstructed layout carry no meaning. Metrics whose exact form is
quadratic in the number of cells subsample (``max_pairs``, ``max_cells``, ``n_patches``) with a
``seed`` so memory stays far below O(n²) for n up to ~1e5 and results are reproducible.

Shape (realism) metrics — :func:`sliced_wasserstein`, :func:`nn_distance_ratio`, :func:`nn_cv_excess`,
:func:`coverage` and :func:`nhood_enrichment_agreement` — judge the predicted point cloud as a tissue
rather than as a ranking. Rank metrics cannot tell a shrunk blob from tissue: a layout squeezed towards
its centre keeps most neighbour and distance ranks yet looks nothing like the section. The geometric ones
compare both layouts after a common normalisation (centred, unit RMS radius, ``pred`` rotated/reflected
onto ``true``). Judge them against the floor :func:`uniform_fill` ``(true)``, cells spread uniformly over
the bounding box of the truth, which a useful layout must beat. On spot grids (Visium, legacy ST) the
spacing is set by the technology, not the tissue, so judge sliced-W, coverage and neighbourhood agreement
there rather than the 1-NN spacing scores.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.linalg import orthogonal_procrustes
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist, pdist
from scipy.stats import rankdata

logger = logging.getLogger(__name__)

__all__ = [
    "cellwise_scores",
    "cellwise_spearman",
    "coverage",
    "distance_spearman",
    "evaluate",
    "knn_jaccard",
    "nhood_enrichment_agreement",
    "nn_cv_excess",
    "nn_distance_ratio",
    "patch_jaccard",
    "procrustes_disparity",
    "scale_ratio",
    "sliced_wasserstein",
    "trustworthiness",
    "uncertainty_calibration",
    "uniform_fill",
]

# elements per chunk (rows × columns) for the cell-wise distance matrices: ~16 MB per float64 array
_CHUNK_ELEMENTS = 2_000_000


# ----------------------------------------------------------------------------------------------------
# validation and alignment helpers


def _as_coords(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array (n_cells, d), got shape {arr.shape}.")
    if arr.shape[1] < 1:
        raise ValueError(f"`{name}` must have at least one coordinate column, got shape {arr.shape}.")
    if arr.shape[0] < 2:
        raise ValueError(f"`{name}` must have at least 2 cells (rows), got {arr.shape[0]}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return arr


def _prepare(pred, true) -> tuple[np.ndarray, np.ndarray]:
    """Validate both arrays and zero-pad the narrower one so they share d."""
    p = _as_coords(pred, "pred")
    t = _as_coords(true, "true")
    if p.shape[0] != t.shape[0]:
        raise ValueError(
            f"`pred` and `true` must have the same number of rows, got {p.shape[0]} and {t.shape[0]}."
        )
    d = max(p.shape[1], t.shape[1])
    # zero columns change no distance, so padding keeps every metric of the narrower layout intact
    if p.shape[1] < d:
        p = np.pad(p, ((0, 0), (0, d - p.shape[1])))
    if t.shape[1] < d:
        t = np.pad(t, ((0, 0), (0, d - t.shape[1])))
    return p, t


def _check_k(k: int, n: int, name: str = "k") -> int:
    k = int(k)
    if not 1 <= k <= n - 1:
        raise ValueError(f"`{name}` must be in [1, n_cells - 1] = [1, {n - 1}], got {k}.")
    return k


def _subset(n: int, m: int, seed: int) -> np.ndarray | None:
    """Sorted random subset of m of n indices, or None when no subsampling is needed."""
    if n <= m:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))


def _subsample_pair(p: np.ndarray, t: np.ndarray, max_cells, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same random subset of at most ``max_cells`` rows of both layouts (all-pairs metrics are O(n^2))."""
    max_cells = int(max_cells)
    if max_cells < 3:
        raise ValueError(f"`max_cells` must be at least 3, got {max_cells}.")
    sub = _subset(p.shape[0], max_cells, seed)
    return (p, t) if sub is None else (p[sub], t[sub])


def _orthogonal_align(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """Best orthogonal map (rotation or reflection) of centred ``source`` onto centred ``target``.

    Returns ``(R, s)`` with ``source @ R`` closest to ``target`` in Frobenius norm over O(d), and
    ``s`` the sum of singular values of ``source.T @ target`` (the optimal scale numerator).
    """
    r, s = orthogonal_procrustes(source, target)
    return r, float(s)


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0, keepdims=True)


def _knn_sets(x: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of each cell's k nearest other cells, robust to exact duplicates."""
    n = x.shape[0]
    _, idx = cKDTree(x).query(x, k=k + 1)
    idx = np.asarray(idx).reshape(n, k + 1)
    keep = idx != np.arange(n)[:, None]
    # with duplicated points the cell itself may not be returned; drop the farthest instead
    no_self = keep.all(axis=1)
    keep[no_self, -1] = False
    return idx[keep].reshape(n, k)


def _knn_jaccard_core(p: np.ndarray, t: np.ndarray, k: int) -> float:
    a = _knn_sets(p, k)
    b = _knn_sets(t, k)
    # each set has distinct members, so equal neighbours in the sorted concatenation are the intersection
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    inter = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    return float(np.mean(inter / (2 * k - inter)))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two 1-D samples; NaN when either is constant."""
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


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
    chunk = max(1, _CHUNK_ELEMENTS // n)
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


# ----------------------------------------------------------------------------------------------------
# public metrics


def knn_jaccard(pred, true, k: int = 10) -> float:
    """Mean Jaccard index of each cell's k nearest neighbours in the predicted and the true layout.

    For each cell, its k nearest other cells (the cell itself excluded) are found in ``pred`` and in
    ``true``; the score is the mean over cells of ``|N_pred ∩ N_true| / |N_pred ∪ N_true|``. Memory and
    time are O(n k log n) (KD-trees), so no subsampling is needed.

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true).
    k
        Number of neighbours, in [1, n_cells - 1].

    Returns
    -------
    float
        Score in [0, 1]; 1 means identical neighbourhoods. A random layout scores about k / n.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import knn_jaccard
    >>> true = np.random.default_rng(0).normal(size=(100, 2))
    >>> knn_jaccard(3.0 * true + 1.0, true, k=5)
    1.0
    """
    p, t = _prepare(pred, true)
    return _knn_jaccard_core(p, t, _check_k(k, p.shape[0]))


def distance_spearman(pred, true, max_pairs: int = 200_000, seed: int = 0) -> float:
    """Spearman correlation between predicted and true pairwise distances.

    All n(n-1)/2 pairs are used when that is at most ``max_pairs``; otherwise ``max_pairs`` random
    pairs of distinct cells (drawn with replacement) are used, so memory is O(max_pairs).

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true).
    max_pairs
        Largest number of pairs to evaluate.
    seed
        Seed for the pair subsample.

    Returns
    -------
    float
        Correlation in [-1, 1]; NaN when either set of distances is constant (e.g. n = 2).

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import distance_spearman
    >>> true = np.random.default_rng(0).normal(size=(100, 3))
    >>> round(distance_spearman(-2.0 * true, true), 6)
    1.0
    """
    p, t = _prepare(pred, true)
    n = p.shape[0]
    max_pairs = int(max_pairs)
    if max_pairs < 1:
        raise ValueError(f"`max_pairs` must be positive, got {max_pairs}.")
    if n * (n - 1) // 2 <= max_pairs:
        return _spearman(pdist(p), pdist(t))
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=max_pairs)
    j = rng.integers(0, n - 1, size=max_pairs)
    j += j >= i  # uniform over j != i
    dp = np.linalg.norm(p[i] - p[j], axis=1)
    dt = np.linalg.norm(t[i] - t[j], axis=1)
    return _spearman(dp, dt)


def cellwise_spearman(pred, true, max_cells: int = 2000, seed: int = 0) -> float:
    """Median over cells of the Spearman correlation of that cell's distances to all other cells.

    The cell-wise score used by LUNA: for each cell, rank its distances to every other cell in
    ``pred`` and in ``true`` and correlate the ranks. With more than ``max_cells`` cells, a random
    subset of ``max_cells`` cells serves both as centres and as the "others", bounding the cost at
    O(max_cells²) time and O(max_cells · chunk) memory.

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true).
    max_cells
        Largest number of cells to use (at least 3).
    seed
        Seed for the cell subsample.

    Returns
    -------
    float
        Median correlation in [-1, 1] (cells with constant distances are ignored; NaN if all are).

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import cellwise_spearman
    >>> true = np.random.default_rng(0).uniform(size=(200, 2))
    >>> round(cellwise_spearman(true[:, ::-1] + 5.0, true), 6)
    1.0
    """
    p, t = _prepare(pred, true)
    p, t = _subsample_pair(p, t, max_cells, seed)
    scores = _cellwise_scores(p, t)
    if np.isnan(scores).all():
        return float("nan")
    return float(np.nanmedian(scores))


def _cellwise_scores(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-cell Spearman of the distances to all other cells (NaN where a cell's distances are constant)."""
    m = p.shape[0]
    if m < 3:
        # one "other" cell per centre: no ranking to correlate
        return np.full(m, np.nan)
    chunk = max(1, _CHUNK_ELEMENTS // m)
    cols = np.arange(m)
    scores = np.empty(m)
    for lo in range(0, m, chunk):
        hi = min(lo + chunk, m)
        rows = np.arange(lo, hi)
        off_diag = cols[None, :] != rows[:, None]  # drop each centre's zero distance to itself
        dp = cdist(p[lo:hi], p)[off_diag].reshape(hi - lo, m - 1)
        dt = cdist(t[lo:hi], t)[off_diag].reshape(hi - lo, m - 1)
        rp = rankdata(dp, axis=1)
        rt = rankdata(dt, axis=1)
        rp -= rp.mean(axis=1, keepdims=True)
        rt -= rt.mean(axis=1, keepdims=True)
        denom = np.sqrt((rp**2).sum(axis=1) * (rt**2).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            scores[lo:hi] = np.where(denom > 0, (rp * rt).sum(axis=1) / denom, np.nan)
    return scores


def cellwise_scores(pred, true, max_cells: int = 2000, seed: int = 0) -> np.ndarray:
    """Each cell's Spearman correlation of its predicted and true distances to the other cells.

    The per-cell scores whose median is :func:`cellwise_spearman`, on the same random subset of at most
    ``max_cells`` cells (which serve both as centres and as the "others"); ``1 -`` a score is the error
    that :func:`uncertainty_calibration` ranks.

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true).
    max_cells
        Largest number of cells to score (at least 3).
    seed
        Seed for the cell subsample.

    Returns
    -------
    ``(n_cells,)`` scores in [-1, 1]; NaN for cells outside the subset or with constant distances.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import cellwise_scores
    >>> true = np.random.default_rng(0).uniform(size=(200, 2))
    >>> scores = cellwise_scores(true * 3.0, true)
    >>> bool(np.allclose(scores, 1.0))
    True
    """
    p, t = _prepare(pred, true)
    if int(max_cells) < 3:
        raise ValueError(f"`max_cells` must be at least 3, got {max_cells}.")
    return _scores_on_subset(p, t, max_cells, seed)


def _scores_on_subset(p: np.ndarray, t: np.ndarray, max_cells, seed: int) -> np.ndarray:
    """Per-cell scores on the random subset, NaN elsewhere."""
    sub = _subset(p.shape[0], int(max_cells), seed)
    idx = np.arange(p.shape[0]) if sub is None else sub
    scores = np.full(p.shape[0], np.nan)
    scores[idx] = _cellwise_scores(p[idx], t[idx])
    return scores


def uncertainty_calibration(pred, true, uncertainty, max_cells: int = 2000, seed: int = 0) -> float:
    """Spearman correlation between each cell's stated uncertainty and its actual placement error.

    A cell's error is ``1 -`` the Spearman correlation of its predicted and true distances to the other
    cells (the per-cell score of :func:`cellwise_spearman`), computed on the same random subset of at most
    ``max_cells`` cells. A calibrated uncertainty ranks the cells by how wrong they are: the score is
    positive, and 1 for a perfect ranking.

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true).
    uncertainty
        Per-cell uncertainty, shape (n_cells,) (e.g. ``obs["spatialedm_uncertainty"]``).
    max_cells
        Largest number of cells to use.
    seed
        Seed for the cell subsample.

    Returns
    -------
    float
        Correlation in [-1, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import uncertainty_calibration
    >>> rng = np.random.default_rng(0)
    >>> true = rng.uniform(size=(300, 2))
    >>> noise = rng.uniform(0, 0.3, size=300)
    >>> pred = true + noise[:, None] * rng.normal(size=(300, 2))
    >>> uncertainty_calibration(pred, true, noise) > 0.3
    True
    """
    p, t = _prepare(pred, true)
    u = np.asarray(uncertainty, dtype=np.float64).ravel()
    if u.shape[0] != p.shape[0]:
        raise ValueError(f"`uncertainty` must have one value per cell ({p.shape[0]}), got {u.shape[0]}.")
    if not np.isfinite(u).all():
        raise ValueError("`uncertainty` contains NaN or infinite values.")
    error = 1.0 - _scores_on_subset(p, t, max_cells, seed)
    ok = np.isfinite(error)
    return _spearman(u[ok], error[ok])


def procrustes_disparity(pred, true) -> float:
    """Residual after the best similarity alignment (O(d), scale, translation) of ``pred`` onto ``true``.

    Both layouts are centred and scaled to unit Frobenius norm, ``pred`` is rotated/reflected and
    rescaled optimally onto ``true``, and the sum of squared differences is returned — the same
    normalisation as :func:`scipy.spatial.procrustes`, computed in O(n d²) memory and time.

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true); must not be all identical.

    Returns
    -------
    float
        Disparity in [0, 1]; 0 is a perfect match up to similarity, 1 means no linear relation
        (also returned when ``pred`` collapses to a point).

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import procrustes_disparity
    >>> true = np.random.default_rng(0).normal(size=(50, 2))
    >>> procrustes_disparity(0.1 * true @ np.array([[0.0, 1.0], [1.0, 0.0]]), true) < 1e-12
    True
    """
    p, t = _prepare(pred, true)
    p, t = _centre(p), _centre(t)
    nt = np.linalg.norm(t)
    if nt == 0:
        raise ValueError("`true` has zero spread (all cells at one position).")
    np_ = np.linalg.norm(p)
    if np_ == 0:
        return 1.0
    p, t = p / np_, t / nt
    _, s = _orthogonal_align(p, t)
    # with unit-norm inputs, the residual of the optimally scaled fit is 1 - s²
    return float(np.clip(1.0 - s**2, 0.0, 1.0))


def patch_jaccard(pred, true, k: int = 10, patch: int = 128, n_patches: int = 200, seed: int = 0) -> float:
    """Mesoscale neighbourhood score: kNN Jaccard computed inside local patches of the true layout.

    For ``n_patches`` random centre cells (without replacement), take the ``patch`` cells nearest to
    the centre in ``true`` (centre included) and compute :func:`knn_jaccard` at ``k`` between ``pred``
    and ``true`` restricted to those cells; return the mean over patches. When ``n_cells <= patch`` the
    whole set is one patch. This mirrors how local accuracy looks inside training-sized sets, where a
    global kNN Jaccard on thousands of interchangeable cells sits near its floor.

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true).
    k
        Neighbours per cell inside a patch; must be below the patch size.
    patch
        Cells per patch.
    n_patches
        Number of patches (capped at n_cells).
    seed
        Seed for the choice of centres.

    Returns
    -------
    float
        Mean Jaccard in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import patch_jaccard
    >>> true = np.random.default_rng(0).uniform(size=(1000, 2))
    >>> patch_jaccard(true * 7.0, true, k=10, patch=64, n_patches=20)
    1.0
    """
    p, t = _prepare(pred, true)
    n = p.shape[0]
    patch, n_patches = int(patch), int(n_patches)
    if patch < 2:
        raise ValueError(f"`patch` must be at least 2, got {patch}.")
    if n_patches < 1:
        raise ValueError(f"`n_patches` must be at least 1, got {n_patches}.")
    if n <= patch:
        return _knn_jaccard_core(p, t, _check_k(k, n))
    k = _check_k(k, patch)
    rng = np.random.default_rng(seed)
    centres = rng.choice(n, size=min(n_patches, n), replace=False)
    _, members = cKDTree(t).query(t[centres], k=patch)
    scores = [_knn_jaccard_core(p[idx], t[idx], k) for idx in members]
    return float(np.mean(scores))


def trustworthiness(pred, true, k: int = 10, max_cells: int = 5000, seed: int = 0) -> float:
    """Trustworthiness of the predicted layout with respect to the true one.

    :func:`sklearn.manifold.trustworthiness` with ``true`` as the original space and ``pred`` as the
    embedding: it penalises cells that are among a cell's k nearest in ``pred`` but far in ``true``.
    It needs full distance matrices, so a random subset of at most ``max_cells`` cells is used
    (memory O(max_cells²)).

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true).
    k
        Number of neighbours; must be below half the number of cells used.
    max_cells
        Largest number of cells to use.
    seed
        Seed for the cell subsample.

    Returns
    -------
    float
        Score in [0, 1] (1 is perfect; random layouts score about 0.5).

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import trustworthiness
    >>> true = np.random.default_rng(0).normal(size=(300, 2))
    >>> round(trustworthiness(true + 3.0, true, k=10), 6)
    1.0
    """
    from sklearn.manifold import trustworthiness as _sk_trustworthiness

    p, t = _prepare(pred, true)
    p, t = _subsample_pair(p, t, max_cells, seed)
    m = p.shape[0]
    k = int(k)
    if not 1 <= k < m / 2:
        raise ValueError(f"`k` must be in [1, n_cells / 2) for {m} cells, got {k}.")
    return float(_sk_trustworthiness(t, p, n_neighbors=k))


def scale_ratio(pred, true) -> float:
    """Size of the prediction relative to the truth: RMS of aligned, centred ``pred`` over RMS of centred ``true``.

    ``pred`` is centred and aligned onto the centred ``true`` over O(d) without any scaling, then
    ``rms(pred) / rms(true)`` is returned, where rms is the root mean squared distance to the centroid.
    Unlike every other metric here this one is **not** scale invariant, by design: it measures the
    shrinkage (< 1) or inflation (> 1) of a prediction made in the target's units, e.g. the denoiser
    shrinkage described in the design notes. It is still invariant to rotation, reflection and
    translation of ``pred``.

    Parameters
    ----------
    pred
        Predicted coordinates, shape (n_cells, d_pred).
    true
        True coordinates, shape (n_cells, d_true); must not be all identical.

    Returns
    -------
    float
        Non-negative ratio; 1 means the prediction has the target's spread.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialedm.metrics import scale_ratio
    >>> true = np.random.default_rng(0).normal(size=(100, 2))
    >>> round(scale_ratio(0.5 * true[:, ::-1] + 2.0, true), 6)
    0.5
    """
    p, t = _prepare(pred, true)
    p, t = _centre(p), _centre(t)
    rms_t = np.sqrt((t**2).sum(axis=1).mean())
    if rms_t == 0:
        raise ValueError("`true` has zero spread (all cells at one position).")
    r, _ = _orthogonal_align(p, t)
    aligned = p @ r  # orthogonal, so the RMS is unchanged; aligned for clarity of the definition
    return float(np.sqrt((aligned**2).sum(axis=1).mean()) / rms_t)


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
