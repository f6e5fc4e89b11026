"""Per-cell uncertainty of a layout, from where it places cells of near-identical expression.

Expression places a cell only as well as it singles the cell out. Where the model's embedding gives a
cell close expression neighbours that the layout scatters across the tissue, the expression did not
decide where the cell belongs, and its position is the least trustworthy. Two measures of that, from one
layout (no sampling needed):

- :func:`rank_disagreement` (the default): how differently the cell and its expression neighbours rank
  their distances to the rest of the tissue. It asks what a layout is read for (which cells are near,
  which far) and so also knows that the same displacement reorders a central cell's distances more than
  an edge cell's.
- :func:`neighbor_spread`: the neighbours' RMS distance from the cell, in the layout's units.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

#: Expression neighbours per cell.
N_NEIGHBORS = 10
#: Expression neighbours per cell of :func:`rank_disagreement`.
N_RANK_NEIGHBORS = 30
#: Landmark cells whose distances are ranked (at most 256, so that a rank fits in one byte).
N_LANDMARKS = 256
#: Above this many cells, neighbours are found approximately (pynndescent, as scanpy does).
EXACT_MAX_CELLS = 50_000
#: Distances held at once while ranking (bounds the memory of large layouts).
_CHUNK_ELEMENTS = 4_000_000


def _expression_neighbors(embedding: np.ndarray, k: int, seed: int) -> np.ndarray:
    n = len(embedding)
    if n <= EXACT_MAX_CELLS:
        return NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)[1][:, 1:]
    from pynndescent import NNDescent  # installed with scanpy

    index = NNDescent(embedding, n_neighbors=k + 1, random_state=seed)
    return index.neighbor_graph[0][:, 1:]


def _checked(embedding, layout, n_neighbors: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Both as float arrays of the same number of cells, and the neighbours that many cells allow."""
    embedding = np.asarray(embedding, dtype=np.float64)
    layout = np.asarray(layout, dtype=np.float64)
    if len(embedding) != len(layout):
        raise ValueError(f"embedding has {len(embedding)} cells, layout {len(layout)}.")
    return embedding, layout, min(int(n_neighbors), len(layout) - 1)


def neighbor_spread(
    embedding: np.ndarray, layout: np.ndarray, n_neighbors: int = N_NEIGHBORS, seed: int = 0
) -> np.ndarray:
    """Each cell's RMS distance, in the layout, to its nearest cells in expression.

    Parameters
    ----------
    embedding
        ``(n, p)`` expression embedding of the cells (the model's encoder output).
    layout
        ``(n, d)`` their layout.
    n_neighbors
        Expression neighbours per cell (fewer when there are fewer other cells).
    seed
        Seed of the approximate neighbour search used above 50,000 cells.

    Returns
    -------
    ``(n,)`` spread, in the layout's units; zeros for fewer than 2 cells.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> layout = rng.uniform(size=(200, 2))
    >>> embedding = layout.copy()  # expression that pins every cell down ...
    >>> embedding[:20] = rng.uniform(size=(20, 2))  # ... but 20 cells look like cells elsewhere
    >>> spread = neighbor_spread(embedding, layout)
    >>> bool(spread[:20].mean() > 2 * spread[20:].mean())
    True
    """
    embedding, layout, k = _checked(embedding, layout, n_neighbors)
    n = len(layout)
    if k < 1:
        return np.zeros(n)
    idx = _expression_neighbors(embedding, k, seed)
    return np.sqrt(((layout[idx] - layout[:, None, :]) ** 2).sum(-1).mean(1))


def rank_disagreement(
    embedding: np.ndarray,
    layout: np.ndarray,
    n_neighbors: int = N_RANK_NEIGHBORS,
    n_landmarks: int = N_LANDMARKS,
    seed: int = 0,
) -> np.ndarray:
    """One minus the mean Spearman correlation of a cell's distance ranks with its expression neighbours'.

    Every cell's distances in the layout to ``n_landmarks`` random cells are ranked; a cell's value is
    ``1 -`` the mean, over its ``n_neighbors`` nearest cells in expression, of the Spearman correlation
    between its ranks and theirs: 0 where cells that look alike sit in the same place, towards 1 (at most
    2) where the layout scatters them. Memory is one byte per cell and landmark.

    Parameters
    ----------
    embedding
        ``(n, p)`` expression embedding of the cells (the model's encoder output).
    layout
        ``(n, d)`` their layout.
    n_neighbors
        Expression neighbours per cell (fewer when there are fewer other cells).
    n_landmarks
        Cells whose distances are ranked, 2 to 256 (all cells when there are fewer).
    seed
        Seed of the landmarks and of the approximate neighbour search used above 50,000 cells.

    Returns
    -------
    ``(n,)`` disagreement in [0, 2]; zeros for fewer than 3 cells.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> layout = rng.uniform(size=(300, 2))
    >>> embedding = layout.copy()  # expression that pins every cell down ...
    >>> embedding[:30] = rng.uniform(size=(30, 2))  # ... but 30 cells look like cells elsewhere
    >>> u = rank_disagreement(embedding, layout)
    >>> bool(u[:30].mean() > 2 * u[30:].mean())
    True
    """
    if not 2 <= int(n_landmarks) <= 256:
        raise ValueError(f"n_landmarks must be between 2 and 256, got {n_landmarks}.")
    embedding, layout, k = _checked(embedding, layout, n_neighbors)
    n = len(layout)
    if n < 3 or k < 1:
        return np.zeros(n)
    m = min(int(n_landmarks), n)
    landmarks = layout[np.random.default_rng(seed).choice(n, size=m, replace=False)]
    # Ordinal ranks (0..m-1, ties broken by order) are a permutation in every row, so every row has the
    # same mean and spread and a Spearman correlation is one dot product.
    ranks = np.empty((n, m), dtype=np.uint8)
    chunk = max(1, _CHUNK_ELEMENTS // m)
    positions = np.arange(m, dtype=np.uint8)
    for lo in range(0, n, chunk):
        order = np.argsort(cdist(layout[lo : lo + chunk], landmarks), axis=1)
        np.put_along_axis(ranks[lo : lo + chunk], order, positions[None, :], axis=1)
    idx = _expression_neighbors(embedding, k, seed)
    mean_rank = (m - 1) / 2.0
    norm = m * (m * m - 1) / 12.0  # sum of squared deviations of a permutation of 0..m-1
    out = np.empty(n)
    chunk = max(1, chunk // k)
    for lo in range(0, n, chunk):
        own = ranks[lo : lo + chunk].astype(np.float32) - mean_rank
        # k * 255 fits 16 bits for any k up to 257; larger k sums in 32 bits
        theirs = ranks[idx[lo : lo + chunk]].sum(1, dtype=np.uint16 if k <= 257 else np.uint32)
        theirs = theirs.astype(np.float32) / k - mean_rank
        out[lo : lo + chunk] = 1.0 - np.einsum("ij,ij->i", own, theirs) / norm
    return np.clip(out, 0.0, 2.0)
