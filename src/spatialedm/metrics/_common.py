"""Validation, subsampling and alignment shared by the layout metrics."""

from __future__ import annotations

import numpy as np
from scipy.linalg import orthogonal_procrustes
from scipy.stats import rankdata

# elements per chunk (rows × columns) for the cell-wise distance matrices: ~16 MB per float64 array; the
# metrics read it as ``_common._CHUNK_ELEMENTS`` at call time, so that this one value governs them all
_CHUNK_ELEMENTS = 2_000_000


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


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two 1-D samples; NaN when either is constant."""
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")
