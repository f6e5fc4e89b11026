"""Per-cell uncertainty of a layout: how far apart it places cells of near-identical expression.

Expression places a cell only as well as it singles the cell out. Where the model's embedding gives a
cell close expression neighbours that the layout scatters across the tissue, the expression did not
decide where the cell belongs, and its position is the least trustworthy. The spread of a cell's
expression neighbours in the layout measures that, from one layout (no sampling needed).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

#: Expression neighbours per cell.
N_NEIGHBORS = 10
#: Above this many cells, neighbours are found approximately (pynndescent, as scanpy does).
EXACT_MAX_CELLS = 50_000


def _expression_neighbors(embedding: np.ndarray, k: int, seed: int) -> np.ndarray:
    n = len(embedding)
    if n <= EXACT_MAX_CELLS:
        return NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)[1][:, 1:]
    from pynndescent import NNDescent  # installed with scanpy

    index = NNDescent(embedding, n_neighbors=k + 1, random_state=seed)
    return index.neighbor_graph[0][:, 1:]


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
    embedding = np.asarray(embedding, dtype=np.float64)
    layout = np.asarray(layout, dtype=np.float64)
    if len(embedding) != len(layout):
        raise ValueError(f"embedding has {len(embedding)} cells, layout {len(layout)}.")
    n = len(layout)
    k = min(int(n_neighbors), n - 1)
    if k < 1:
        return np.zeros(n)
    idx = _expression_neighbors(embedding, k, seed)
    return np.sqrt(((layout[idx] - layout[:, None, :]) ** 2).sum(-1).mean(1))
