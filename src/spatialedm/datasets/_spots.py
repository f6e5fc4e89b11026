"""Pool single cells into spots on a square grid, as a spot-level assay (Visium, legacy ST) would see them.

A lab that holds single-cell spatial data can check how a model trained on spots places single cells (or
the reverse) without a second assay: :func:`pool_spots` bins each section into squares that hold a chosen
number of cells on average, sums their counts and keeps each square's centre as the spot's position.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

logger = logging.getLogger(__name__)

__all__ = ["pool_spots"]


def _grid_codes(coords: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Square index of each point on a grid of ``side`` anchored at the minimum corner; ``(codes, keys)``."""
    cells = np.floor((coords - coords.min(axis=0)) / side).astype(np.int64)
    keys, codes = np.unique(cells, axis=0, return_inverse=True)
    return codes.ravel(), keys


def _side_for(coords: np.ndarray, cells_per_spot: float) -> float:
    """Grid side at which the non-empty squares hold ``cells_per_spot`` points on average (bisection)."""
    span = np.ptp(coords, axis=0)
    span = span[span > 0]
    if len(coords) <= cells_per_spot or not len(span):
        return float(max(span.max() if len(span) else 1.0, 1e-12) * 2)
    # the mean occupancy grows with the side; bisect on its logarithm
    lo, hi = np.log(span.max() / len(coords) / 4), np.log(span.max() * 2)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        codes, _ = _grid_codes(coords, float(np.exp(mid)))
        if len(coords) / (codes.max() + 1) < cells_per_spot:
            lo = mid
        else:
            hi = mid
    return float(np.exp(hi))


def pool_spots(
    adata: AnnData,
    *,
    cells_per_spot: float = 8.0,
    spatial_key: str = "spatial",
    batch_key: str | None = None,
    layer: str | None = None,
    labels_key: str | None = None,
) -> AnnData:
    """Pool single cells into spots on a square grid: summed expression, the square's centre as position.

    Each section (``obs[batch_key]``) gets its own grid, anchored at its lowest coordinates, with the side
    chosen so that the squares holding any cell hold ``cells_per_spot`` cells on average (about 8 for a
    Visium spot of 55 µm on a cortex section). Empty squares are dropped.

    Parameters
    ----------
    adata
        Single cells with coordinates in ``obsm[spatial_key]`` (2-D or 3-D).
    cells_per_spot
        Mean number of cells per spot, at least 1.
    spatial_key
        Key of the coordinates in ``adata.obsm``.
    batch_key
        ``obs`` column of sections, pooled separately (``None``: one section).
    layer
        Layer holding the expression to sum (``None``: ``X``). It is summed into both ``X`` and, when given,
        the same layer of the result, so the result is registered exactly as the cells were.
    labels_key
        Optional ``obs`` column of cell labels: the result's column of that name holds each spot's most
        frequent label, and ``obs[labels_key + "_purity"]`` the fraction of its cells carrying it.

    Returns
    -------
    A new AnnData of spots with the same genes: ``obsm[spatial_key]`` the square centres, ``obs["n_cells"]``
    the cells pooled, ``obs[batch_key]`` the section, and ``uns["pool_spots"]["cell_spot"]`` the spot of
    every cell (an index into the result's rows, in ``adata``'s cell order).

    Raises
    ------
    KeyError
        When ``spatial_key``, ``batch_key``, ``layer`` or ``labels_key`` is missing.
    ValueError
        When ``cells_per_spot < 1``.

    Examples
    --------
    >>> import spatialedm as sem
    >>> cells = sem.datasets.osmfish_cortex()
    >>> spots = sem.datasets.pool_spots(cells, cells_per_spot=8, layer="counts")
    >>> round(float(spots.obs["n_cells"].mean()))
    8
    """
    if not cells_per_spot >= 1:
        raise ValueError(f"cells_per_spot must be at least 1, got {cells_per_spot}.")
    if spatial_key not in adata.obsm:
        raise KeyError(f"spatial_key {spatial_key!r} not found in adata.obsm.")
    if batch_key is not None and batch_key not in adata.obs:
        raise KeyError(f"batch_key {batch_key!r} not found in adata.obs.")
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"layer {layer!r} not found in adata.layers.")
    if labels_key is not None and labels_key not in adata.obs:
        raise KeyError(f"labels_key {labels_key!r} not found in adata.obs.")
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    sections = (
        adata.obs[batch_key].astype(str).to_numpy() if batch_key is not None else np.full(adata.n_obs, "")
    )
    cell_spot = np.empty(adata.n_obs, dtype=np.int64)
    centres, spot_section = [], []
    for section in pd.unique(sections):
        idx = np.flatnonzero(sections == section)
        side = _side_for(coords[idx], cells_per_spot)
        codes, keys = _grid_codes(coords[idx], side)
        cell_spot[idx] = codes + len(spot_section)
        centres.append(coords[idx].min(axis=0) + (keys + 0.5) * side)
        spot_section.extend([section] * len(keys))
    n_spots = len(spot_section)
    # one sparse (spots x cells) indicator matrix sums any expression matrix, dense or sparse
    pool = sparse.csr_matrix(
        (np.ones(adata.n_obs), (cell_spot, np.arange(adata.n_obs))), shape=(n_spots, adata.n_obs)
    )
    X = adata.layers[layer] if layer is not None else adata.X
    summed = pool @ (X if sparse.issparse(X) else np.asarray(X, dtype=np.float64))
    summed = (
        sparse.csr_matrix(summed, dtype=np.float32) if sparse.issparse(X) else np.asarray(summed, np.float32)
    )
    out = AnnData(summed)
    out.var_names = adata.var_names.copy()
    out.obs_names = [f"spot{i}" for i in range(n_spots)]
    if layer is not None:
        out.layers[layer] = summed.copy()
    out.obsm[spatial_key] = np.concatenate(centres).astype(np.float64)
    out.obs["n_cells"] = np.bincount(cell_spot, minlength=n_spots)
    if batch_key is not None:
        out.obs[batch_key] = pd.Categorical(spot_section)
    if labels_key is not None:
        labels = adata.obs[labels_key].astype(str).to_numpy()
        table = pd.crosstab(cell_spot, labels)
        out.obs[labels_key] = pd.Categorical(table.idxmax(axis=1).reindex(range(n_spots)).to_numpy())
        out.obs[f"{labels_key}_purity"] = (
            (table.max(axis=1) / table.sum(axis=1)).reindex(range(n_spots)).to_numpy()
        )
    out.uns["pool_spots"] = {"cells_per_spot": float(cells_per_spot), "cell_spot": cell_spot}
    logger.info(
        "Pooled %d cells into %d spots (%.1f cells per spot on average).",
        adata.n_obs,
        n_spots,
        adata.n_obs / max(n_spots, 1),
    )
    return out
