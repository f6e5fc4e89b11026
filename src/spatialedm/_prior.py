"""A prior placement of the query that the refiner corrects: the reference's tuned kNN regression, or the user's.

A direct regression onto reference positions (kNN regression, optimal transport, Tangram) places each
cell from its own expression; the generator places a set of cells jointly. Mixing the two before the
refiner, and letting the refiner correct the mix with the set's context, is more accurate on most
benchmark tasks than the generator alone, most where the reference is small (docs: "Refining another
placement").
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from ._knn import knn_regression
from ._validation import check_fraction

#: Prior placements computed by the package (besides an array given by the user); ``"auto"`` is ``"knn"``
#: when the model holds its reference and cells other than the reference are placed, else none.
PRIORS = ("auto", "knn")


def check_prior_weight(prior_weight: float) -> float:
    """``prior_weight`` as a float in [0, 1], or a ``ValueError`` naming it."""
    return check_fraction(prior_weight, "prior_weight")


def resolve_prior(model, adata: AnnData | None, prior, n_obs: int, seed: int | None) -> np.ndarray | None:
    """The ``(n_obs, d)`` prior placement of the cells to place, or ``None`` without one.

    Parameters
    ----------
    model
        The trained :class:`~spatialedm.SpatialEDM` (its reference and registry are read for ``"knn"``).
    adata
        The cells to place (``None``: the reference itself).
    prior
        ``None``, ``"knn"`` (:func:`~spatialedm.baselines.knn_regression` of the registered reference, with
        its number of neighbours and principal components chosen on held-out parts of the reference),
        ``"auto"`` (``"knn"`` when the model holds its reference and ``adata`` is given, else ``None``) or
        an array of positions, one row per cell (any frame and scale).
    n_obs
        Number of cells to place.
    seed
        Seed of the kNN selection's held-out blocks.

    Returns
    -------
    The prior layout, or ``None``.
    """
    if isinstance(prior, str) and prior == "auto":
        prior = "knn" if adata is not None and model.adata is not None else None
    if prior is None:
        return None
    n_spatial = int(model.module.n_spatial)
    if isinstance(prior, str):
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, an (n_cells, d) array or None, got {prior!r}.")
        if adata is None:
            raise ValueError(
                "prior='knn' regresses the cells to place onto the reference's positions; pass those cells "
                "(model.get_latent_coordinates(query, prior='knn')), not the reference itself."
            )
        if model.adata is None:
            raise ValueError(
                "prior='knn' needs the reference this model was trained on: load it with "
                "SpatialEDM.load(path, adata=reference)."
            )
        setup = model.registry_["setup_args"]
        batch_key = setup.get("batch_key")
        return knn_regression(
            model.adata,
            adata,
            spatial_key=setup["spatial_key"],
            layer=setup.get("layer"),
            batch_key=batch_key,
            query_batch_key=batch_key if batch_key is not None and batch_key in adata.obs else None,
            seed=0 if seed is None else int(seed),
        )
    layout = np.asarray(prior, dtype=np.float64)
    if layout.shape != (n_obs, n_spatial):
        raise ValueError(
            f"prior must have one row per cell and the reference's {n_spatial} coordinates, shape "
            f"({n_obs}, {n_spatial}); got {layout.shape}."
        )
    if not np.isfinite(layout).all():
        raise ValueError("prior contains NaN or infinite positions.")
    return layout
