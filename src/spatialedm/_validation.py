"""Early, explicit checks of user input, each naming the offending key or value."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse


def validate_spatial(adata: AnnData, spatial_key: str, batch_key: str | None = None) -> None:
    """Check that ``adata.obsm[spatial_key]`` holds finite numeric 2-D or 3-D coordinates with spread.

    Parameters
    ----------
    adata
        The AnnData to check.
    spatial_key
        Key of ``adata.obsm``.
    batch_key
        ``obs`` column of sections; each section must have cells at more than one position.

    Raises
    ------
    KeyError
        When the key is missing.
    ValueError
        When the coordinates are not numeric, not finite, not 2-D/3-D, or a section has all its cells at
        one position.
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"spatial_key {spatial_key!r} not found in adata.obsm (available: {list(adata.obsm.keys())})."
        )
    coords = adata.obsm[spatial_key]
    if hasattr(coords, "to_numpy"):
        coords = coords.to_numpy()
    coords = np.asarray(coords)
    if not np.issubdtype(coords.dtype, np.number) or np.issubdtype(coords.dtype, np.complexfloating):
        raise ValueError(f"adata.obsm[{spatial_key!r}] must be numeric, got dtype {coords.dtype}.")
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(
            f"adata.obsm[{spatial_key!r}] must have 2 or 3 columns (x, y[, z]), got shape {coords.shape}."
        )
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        raise ValueError(
            f"adata.obsm[{spatial_key!r}] has {int(bad.sum())} cells with NaN or infinite coordinates, "
            f"e.g. {adata.obs_names[np.flatnonzero(bad)[:3]].tolist()}."
        )
    if batch_key is not None and batch_key in adata.obs:
        sections = adata.obs[batch_key].astype(str).to_numpy()
    else:
        sections = np.zeros(adata.n_obs, dtype=object)
    for name in pd.unique(sections):
        c = coords[sections == name].astype(np.float64)
        if len(c) >= 2 and np.ptp(c, axis=0).max() == 0:
            where = f" in section {batch_key}={name!r}" if batch_key is not None else ""
            raise ValueError(
                f"adata.obsm[{spatial_key!r}] has all {len(c)} cells{where} at one position {c[0].tolist()}: "
                "there is no layout to learn. Check the coordinates (e.g. a column of zeros)."
            )


def validate_expression(adata: AnnData, layer: str | None, expression: str = "auto") -> None:
    """Check the expression matrix: present, finite, unique names, no negative counts, no empty cells.

    Parameters
    ----------
    adata
        The AnnData to check.
    layer
        Layer holding expression; ``None`` for ``adata.X``.
    expression
        ``"counts"``, ``"log"`` or ``"auto"`` (what the user declared).

    Raises
    ------
    KeyError
        When the layer is missing.
    ValueError
        When names are duplicated or values are not finite / negative / all zero for a cell.
    """
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"layer {layer!r} not found in adata.layers (available: {list(adata.layers.keys())}).")
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    if adata.n_obs < 2 or adata.n_vars < 1:
        raise ValueError(f"The reference needs at least 2 cells and 1 gene, got shape {adata.shape}.")
    for axis, names in (("obs_names", adata.obs_names), ("var_names", adata.var_names)):
        if not names.is_unique:
            dup = names[names.duplicated()].unique()[:3].tolist()
            raise ValueError(f"adata.{axis} has duplicates, e.g. {dup}; call adata.{axis}_make_unique().")
    X = adata.layers[layer] if layer is not None else adata.X
    if X is None:
        raise ValueError(f"{where} is empty (None).")
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{where} must be numeric, got dtype {values.dtype}.")
    if not np.isfinite(values).all():
        raise ValueError(f"{where} contains NaN or infinite values.")
    # A layer named as counts ("counts", "raw_counts", ...) is declared as counts just as expression="counts".
    declared = expression == "counts" or (
        expression == "auto" and layer is not None and "count" in layer.lower()
    )
    how = "expression='counts'" if expression == "counts" else f"its name {layer!r}"
    if declared and (values < 0).any():
        raise ValueError(
            f"{where} is declared as counts ({how}) but has negative values, e.g. {float(values[values < 0][0]):g}; "
            "pass the raw counts, or expression='log' for log-normalised values."
        )
    if expression == "counts":
        if not np.allclose(values, np.round(values)):
            raise ValueError(
                f"{where} is declared as counts (expression='counts') but has non-integer values."
            )
    totals = np.asarray(np.abs(X).sum(axis=1)).ravel()
    empty = totals == 0
    if empty.any():
        raise ValueError(
            f"{where} has {int(empty.sum())} cells with no expression at all, e.g. "
            f"{adata.obs_names[np.flatnonzero(empty)[:3]].tolist()}; remove them (e.g. sc.pp.filter_cells)."
        )
    gene_totals = np.asarray(np.abs(X).sum(axis=0)).ravel()
    silent = gene_totals == 0
    if silent.any():
        # A silent gene carries no information but does no harm: warn rather than refuse.
        warnings.warn(
            f"{where} has {int(silent.sum())} genes with no expression in any cell, e.g. "
            f"{adata.var_names[np.flatnonzero(silent)[:3]].tolist()}; they carry no information "
            "(sc.pp.filter_genes(adata, min_cells=1) removes them).",
            UserWarning,
            stacklevel=3,
        )


def check_fraction(value, name: str) -> float:
    """``value`` as a float in [0, 1], or a ``ValueError`` naming ``name`` (NaN is refused too)."""
    w = float(value)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
    return w
