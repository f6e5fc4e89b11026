"""Calibration of a per-cell uncertainty against the actual per-cell placement error."""

from __future__ import annotations

import numpy as np

from ._agreement import _scores_on_subset
from ._common import _prepare, _spearman


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
