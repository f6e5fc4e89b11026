"""Distance-geometry consensus: one layout from many partial layouts, by their distances, not coordinates.

Averaging coordinates over samples or overlapping subsets shrinks a layout (where the layouts disagree,
the mean falls in between). Distances are aggregated instead: every partial layout measures the distances
of a sparse set of cell pairs (each cell's nearest neighbours in it and a few random partners), the
measurements of each pair are reduced to their median, and one global layout is fitted to those
distances by stress majorisation (SMACOF with sparse weights). Memory is linear in the number of pairs.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import cg
from scipy.spatial import cKDTree

logger = logging.getLogger(__name__)


def measure_edges(
    cells: np.ndarray, layout: np.ndarray, k: int, n_random: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distances of a sparse set of pairs in one partial layout.

    Parameters
    ----------
    cells
        ``(m,)`` global indices of the layout's cells.
    layout
        ``(m, d)`` their positions (one partial layout, normalised to unit per-axis RMS).
    k
        Nearest neighbours of each cell measured.
    n_random
        Random partners of each cell measured (they hold the layout's global shape).
    rng
        Random generator.

    Returns
    -------
    ``(i, j, dist)``: global indices with ``i < j`` and the distances.
    """
    m = len(cells)
    k = min(k, m - 1)
    _, nn = cKDTree(layout).query(layout, k=k + 1)
    a = np.repeat(np.arange(m), k)
    b = np.asarray(nn)[:, 1:].ravel()
    ra = np.repeat(np.arange(m), n_random)
    rb = rng.integers(0, m, size=m * n_random)
    a, b = np.concatenate([a, ra]), np.concatenate([b, rb])
    keep = a != b
    a, b = a[keep], b[keep]
    dist = np.linalg.norm(layout[a] - layout[b], axis=1)
    i, j = cells[a], cells[b]
    return np.minimum(i, j), np.maximum(i, j), dist


def median_edges(i: np.ndarray, j: np.ndarray, dist: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Reduce repeated measurements of each pair to their median.

    Parameters
    ----------
    i, j
        Pair indices (``i < j``).
    dist
        Measured distances.
    n
        Number of cells.

    Returns
    -------
    ``(i, j, median, count)`` with one entry per distinct pair.
    """
    key = i.astype(np.int64) * n + j
    order = np.lexsort((dist, key))
    key, dist = key[order], dist[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    counts = np.diff(np.r_[starts, len(key)])
    # the median of each run of equal keys, from the sorted distances
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    med = 0.5 * (dist[lo] + dist[hi])
    uk = key[starts]
    return uk // n, uk % n, med, counts


def stress_majorization(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    dist: np.ndarray,
    init: np.ndarray,
    weights: np.ndarray | None = None,
    n_iter: int = 30,
    tol: float = 1e-4,
) -> np.ndarray:
    """Fit a layout to target distances of a sparse set of pairs by stress majorisation (SMACOF).

    Minimises ``sum w_ij (||x_i - x_j|| - d_ij)^2`` over the pairs with the Guttman transform; each
    iteration solves ``L X = B(X) X`` (``L`` the weighted graph Laplacian) by conjugate gradients, so memory
    and time per iteration are linear in the number of pairs.

    Parameters
    ----------
    n
        Number of cells.
    i, j, dist
        Pairs and their target distances.
    init
        ``(n, d)`` starting layout.
    weights
        Pair weights (default ``1 / max(d_ij, floor)^2``, which weighs relative errors alike at every scale;
        the floor, the 5th percentile of the distances, keeps near-coincident cells from dominating).
    n_iter
        Most iterations.
    tol
        Stop when the relative decrease of the stress falls below this.

    Returns
    -------
    ``(n, d)`` layout.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, 2))
    >>> i, j = np.triu_indices(60, 1)
    >>> d = np.linalg.norm(x[i] - x[j], axis=1)
    >>> y = stress_majorization(60, i, j, d, init=rng.normal(size=(60, 2)), n_iter=300, tol=1e-9)
    >>> dy = np.linalg.norm(y[i] - y[j], axis=1)
    >>> bool(np.abs(dy - d).max() < 1e-2)
    True
    """
    dist = np.maximum(np.asarray(dist, dtype=np.float64), 1e-9)
    floor = max(float(np.quantile(dist, 0.05)), 1e-6)
    w = 1.0 / np.maximum(dist, floor) ** 2 if weights is None else np.asarray(weights, dtype=np.float64)
    W = sparse.coo_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    L = (sparse.diags(np.asarray(W.sum(1)).ravel()) - W).tocsr()
    # the Laplacian is singular (translations); a tiny ridge keeps CG well posed and the mean at zero
    L_reg = L + sparse.identity(n, format="csr") * 1e-9 * float(w.mean())
    x = np.array(init, dtype=np.float64)
    x -= x.mean(0)

    def stress(y):
        cur = np.linalg.norm(y[i] - y[j], axis=1)
        return float((w * (cur - dist) ** 2).sum()), cur

    s_old, cur = stress(x)
    it = 0
    for it in range(1, n_iter + 1):  # noqa: B007 - the count is logged
        ratio = w * dist / np.maximum(cur, 1e-12)
        Bm = sparse.coo_matrix((np.r_[ratio, ratio], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
        B = sparse.diags(np.asarray(Bm.sum(1)).ravel()) - Bm
        rhs = B @ x
        new = np.empty_like(x)
        for c in range(x.shape[1]):
            new[:, c], _ = cg(L_reg, rhs[:, c], x0=x[:, c], maxiter=50)
        new -= new.mean(0)
        s_new, cur_new = stress(new)
        if s_new > s_old:  # CG did not converge far enough to improve: keep the better layout
            break
        x, cur = new, cur_new
        if s_old - s_new < tol * max(s_old, 1e-12):
            break
        s_old = s_new
    logger.debug("stress majorisation: %d iterations, stress %.4g", it, s_old)
    return x
