"""Agreement metrics: how well a layout keeps the true neighbourhoods, distance ranks and positions.

:func:`cellwise_spearman`, :func:`patch_jaccard`, :func:`knn_jaccard`, :func:`distance_spearman` and
:func:`trustworthiness` compare ranks and neighbour sets; :func:`procrustes_disparity` the positions after
the best similarity alignment; :func:`scale_ratio` the size, in the target's units.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist, pdist
from scipy.stats import rankdata

from . import _common
from ._common import _centre, _check_k, _orthogonal_align, _prepare, _spearman, _subsample_pair, _subset


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
    chunk = max(1, _common._CHUNK_ELEMENTS // m)
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
