"""Cell spacing: measure the reference tissue's spacing and spread a layout's clumps to it.

A layout regressed from expression packs similar cells into dense clumps (cells at a fraction of the
tissue's spacing, with empty space between clumps). Real tissue does not overlap: cells keep a typical
distance from their nearest neighbour. The reference measures that distance, made scale-free: at unit
per-axis RMS, ``n`` cells of a tissue of a given shape have a median nearest-neighbour distance close
to ``c / n ** (1 / d)``, so the constant ``c`` carries over to a query with another number of cells.
Relaxation then pushes apart every pair of cells closer than that distance (soft spheres), a few cells'
spacing at most: neighbourhoods and the layout's global shape stay as they were.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .geometry import split_sections, unit_rms

#: Relaxation sweeps and the share of each pair's overlap removed per sweep.
RELAX_ITERATIONS = 20
RELAX_STEP = 0.5
#: Neighbours checked for overlap per cell and sweep (bounds memory to linear in the cells).
RELAX_NEIGHBORS = 8


def _median_nn(x: np.ndarray) -> float:
    return float(np.median(cKDTree(x).query(x, k=2)[0][:, 1]))


def tissue_spacing(coords: np.ndarray, groups: np.ndarray | None = None) -> float:
    """Scale-free cell spacing of a tissue: median 1-NN distance at unit RMS times ``n ** (1 / d)``.

    Parameters
    ----------
    coords
        ``(n, d)`` coordinates.
    groups
        Section of each cell: measured per section (each in its own frame), then the median is taken.

    Returns
    -------
    The spacing constant ``c``; ``0.0`` when no section has 3 or more cells at distinct positions.

    Examples
    --------
    >>> g = np.stack(np.meshgrid(np.arange(20.0), np.arange(20.0)), -1).reshape(-1, 2)
    >>> round(tissue_spacing(g), 3)  # unit grid: (1 / its per-axis RMS 5.766) * sqrt(400)
    3.468
    """
    dim = np.shape(coords)[1]
    values = []
    for x in split_sections(coords, groups):
        if len(x) < 3:
            continue
        nn = _median_nn(unit_rms(x))
        if nn > 0:
            values.append(nn * len(x) ** (1 / dim))
    return float(np.median(values)) if values else 0.0


def relax_spacing(
    layout: np.ndarray,
    spacing: float,
    *,
    n_iter: int = RELAX_ITERATIONS,
    step: float = RELAX_STEP,
    seed: int = 0,
) -> np.ndarray:
    """Spread overlapping cells of a layout to the tissue's spacing (soft-sphere relaxation).

    Each sweep finds every cell's nearest neighbours closer than the target distance
    ``spacing / n ** (1 / d)`` (at unit per-axis RMS) and moves both cells of each such pair apart by
    ``step`` times half their overlap; the layout is re-centred and re-scaled to unit RMS after each
    sweep. Cells at identical positions are separated along random directions.

    Parameters
    ----------
    layout
        ``(n, d)`` layout.
    spacing
        Spacing constant from :func:`tissue_spacing`; ``0`` returns the layout unchanged (normalised).
    n_iter
        Sweeps.
    step
        Share of each overlap removed per sweep, in ``(0, 1]``.
    seed
        Seed of the directions that separate coincident cells.

    Returns
    -------
    The relaxed layout, centred with unit per-axis RMS.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clumps = np.repeat(rng.normal(size=(50, 2)), 8, axis=0) + 1e-3 * rng.normal(size=(400, 2))
    >>> c = tissue_spacing(rng.uniform(size=(400, 2)))
    >>> relaxed = relax_spacing(clumps, c)
    >>> bool(_median_nn(relaxed) > 10 * _median_nn(unit_rms(clumps)))
    True
    """
    x = unit_rms(np.asarray(layout, dtype=np.float64))
    n, dim = x.shape
    if spacing <= 0 or n < 3:
        return x
    if not 0 < step <= 1:
        raise ValueError(f"step must lie in (0, 1], got {step}.")
    rng = np.random.default_rng(seed)
    target = spacing / n ** (1 / dim)
    k = min(RELAX_NEIGHBORS, n - 1)
    for _ in range(int(n_iter)):
        dist, nbr = cKDTree(x).query(x, k=k + 1, distance_upper_bound=target, workers=-1)
        dist, nbr = dist[:, 1:], nbr[:, 1:]
        close = np.isfinite(dist)
        if not close.any():
            break
        i = np.repeat(np.arange(n), k).reshape(n, k)[close]
        j, d = nbr[close], dist[close]
        v = x[i] - x[j]
        coincident = d < 1e-12 * target
        if coincident.any():
            u = rng.normal(size=(int(coincident.sum()), dim))
            v[coincident] = u / np.linalg.norm(u, axis=1, keepdims=True)
            d = np.where(coincident, 0.0, d)
        unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
        # Each cell moves away from each close neighbour by step x half the overlap; a pair found from
        # both ends therefore separates by step x the overlap per sweep.
        push = (step * (target - d) / 2)[:, None] * unit
        # Per-cell sums by bincount: np.add.at is an order of magnitude slower at a million cells.
        shift = np.stack([np.bincount(i, weights=push[:, a], minlength=n) for a in range(dim)], axis=1)
        x = unit_rms(x + shift)
    return x
