"""Plots of reconstructed layouts, their uncertainty, training curves and refiner diagnostics (matplotlib).

:meth:`~spatialedm.SpatialEDM.get_latent_coordinates` writes ``obsm["X_spatialedm"]``, so squidpy
(``pip install spatialedm[plot]``) and scanpy draw the layout directly too::

    import squidpy as sq

    sq.pl.spatial_scatter(adata, spatial_key="X_spatialedm", shape=None, color="cell_type")
    sc.pl.embedding(adata, basis="spatialedm", color="cell_type")

Every function here returns its matplotlib axes, shows the figure only with ``show=True`` and writes
it to ``save`` when a path is given.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from .geometry import align_numpy

if TYPE_CHECKING:
    from collections.abc import Sequence
    from os import PathLike

logger = logging.getLogger(__name__)

__all__ = ["history", "reconstruction", "sigma_diagnostics", "uncertainty"]

#: Quantities drawn by :func:`sigma_diagnostics`, in panel order.
DIAGNOSTIC_QUANTITIES = ("scale_ratio", "patch_jaccard", "distance_spearman", "fx_ratio")
_PAIRS = ((0, 1), (0, 2), (1, 2))
_AXIS_NAMES = "xyz"


def _finish(fig, show: bool, save: str | PathLike | None) -> None:
    import matplotlib.pyplot as plt

    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")
        logger.info("Saved the figure to %s", save)
    if show:
        plt.show()


def _values(adata: AnnData, color: str | None):
    if color is None:
        return None, None
    if color in adata.obs:
        col = adata.obs[color]
        if col.dtype.name == "category" or col.dtype == object or col.dtype == bool:
            cats = col.astype("category")
            return cats.cat.codes.to_numpy(), list(cats.cat.categories)
        return col.to_numpy(dtype=float), None
    if color in adata.var_names:
        x = adata[:, color].X
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        return x.ravel().astype(float), None
    raise KeyError(f"color {color!r} is neither a column of adata.obs nor a gene in adata.var_names.")


def _layout(adata: AnnData, basis: str, what: str = "basis") -> np.ndarray:
    if basis not in adata.obsm:
        hint = "; run get_latent_coordinates" if what == "basis" else ""
        raise KeyError(f"{what} {basis!r} not in adata.obsm {list(adata.obsm.keys())}{hint}.")
    x = np.asarray(adata.obsm[basis], dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"adata.obsm[{basis!r}] must be (n_cells, 2 or more), got shape {x.shape}.")
    return x


def _principal(x: np.ndarray) -> np.ndarray:
    """Centre and rotate onto the principal axes (a reconstruction has no meaningful orientation)."""
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt.T


def _projections(d: int) -> tuple[tuple[int, int], ...]:
    return _PAIRS if d >= 3 else ((0, 1),)


def _scatter(ax, xy, values, cats, point_size, cmap=None, **kwargs):
    if values is not None:
        kwargs["c"] = values
        kwargs["cmap"] = cmap or ("tab20" if cats else "viridis")
    sc = ax.scatter(xy[:, 0], xy[:, 1], s=point_size, linewidths=0, **kwargs)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return sc


def _legend(ax, sc, cats) -> None:
    import matplotlib.pyplot as plt

    handles = [
        plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(i)), label=c) for i, c in enumerate(cats)
    ]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False, fontsize=7)


def reconstruction(
    adata: AnnData,
    basis: str | Sequence[str] = "X_spatialedm",
    truth: str | None = None,
    color: str | None = None,
    point_size: float = 4.0,
    titles: Sequence[str] | None = None,
    show: bool = False,
    save: str | PathLike | None = None,
):
    """Draw reconstructed layouts, beside the true one (aligned by rotation, reflection and scale).

    Parameters
    ----------
    adata
        AnnData with the layout in ``obsm[basis]``.
    basis
        ``obsm`` key of the reconstruction, or several keys drawn side by side (e.g. the generator's
        and the refined layout).
    truth
        ``obsm`` key of true coordinates; the reconstruction is aligned onto them (translation, O(d)
        including reflections, global scale) and drawn beside them in their frame.
    color
        ``obs`` column or gene to colour by; by default, with ``truth``, each cell's position along
        the first principal axis of the true layout, so that misplaced cells stand out.
    point_size
        Marker size.
    titles
        Panel titles of the reconstructions (default: their keys).
    show
        Call ``plt.show()``.
    save
        Write the figure to this path.

    Returns
    -------
    Array of matplotlib axes. 2-D layouts: one panel per layout (true, then each reconstruction). 3-D layouts
    are drawn as the xy, xz and yz projections, one row per layout: shape ``(n_layouts, 3)``. Without
    ``truth`` the reconstruction is rotated onto its principal axes, as its orientation is arbitrary.

    Examples
    --------
    >>> coords = model.get_latent_coordinates(query, seed=0)
    >>> axes = sem.pl.reconstruction(query, truth="spatial", save="layout.png")
    >>> len(axes)
    2

    The same layout through squidpy (not run here: importing squidpy takes seconds):

    >>> import squidpy as sq  # doctest: +SKIP
    >>> sq.pl.spatial_scatter(query, spatial_key="X_spatialedm", shape=None, color="domain")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    keys = [basis] if isinstance(basis, str) else list(basis)
    if titles is not None and len(titles) != len(keys):
        raise ValueError(f"titles has {len(titles)} entries for {len(keys)} layouts.")
    names = list(titles) if titles is not None else (["reconstruction"] if len(keys) == 1 else keys)
    preds = [_layout(adata, key) for key in keys]
    values, cats = _values(adata, color)
    if truth is not None:
        true = _layout(adata, truth, "truth")
        layouts = [("true layout", true)]
        for name, pred in zip(names, preds):
            d = max(true.shape[1], pred.shape[1])
            tpad = np.pad(true, ((0, 0), (0, d - true.shape[1])))
            ppad = np.pad(pred, ((0, 0), (0, d - pred.shape[1])))
            layouts.append((f"{name} (aligned)", align_numpy(ppad, tpad, scale=True)[:, : true.shape[1]]))
        if values is None:
            values = _principal(true)[:, 0]
    else:
        layouts = [(name, _principal(pred)) for name, pred in zip(names, preds)]
    dim = layouts[0][1].shape[1]
    pairs = _projections(dim)
    if dim >= 3:
        fig, axes = plt.subplots(len(layouts), 3, figsize=(12, 4 * len(layouts)), squeeze=False)
    else:
        fig, axes = plt.subplots(1, len(layouts), figsize=(4.5 * len(layouts), 4.5), squeeze=False)
    sc = None
    for row, (title, xy) in enumerate(layouts):
        for col, (a, b) in enumerate(pairs):
            ax = axes[row, col] if dim >= 3 else axes[0, row]
            sc = _scatter(ax, xy[:, [a, b]], values, cats, point_size)
            label = f"{_AXIS_NAMES[a]}{_AXIS_NAMES[b]}" if truth is not None else f"axes {a + 1}-{b + 1}"
            ax.set_title(f"{title}, {label}" if dim >= 3 else title)
    if cats:
        _legend(axes[0, -1], sc, cats)
    _finish(fig, show, save)
    return axes if dim >= 3 else axes[0]


def uncertainty(
    adata: AnnData,
    basis: str = "X_spatialedm",
    key: str = "spatialedm_uncertainty",
    point_size: float = 4.0,
    cmap: str = "magma",
    vmax: float | None = None,
    show: bool = False,
    save: str | PathLike | None = None,
):
    """Draw a reconstructed layout with each cell coloured by its uncertainty.

    The uncertainty is written to ``obs["spatialedm_uncertainty"]`` by
    :meth:`~spatialedm.SpatialEDM.get_latent_coordinates`: by default how differently each cell and its
    nearest cells in expression rank their distances to the rest of the layout (0 to 2).

    Parameters
    ----------
    adata
        AnnData with the layout in ``obsm[basis]`` and the uncertainty in ``obs[key]``.
    basis
        ``obsm`` key of the reconstruction.
    key
        ``obs`` column of the per-cell uncertainty.
    point_size
        Marker size.
    cmap
        Matplotlib colour map.
    vmax
        Upper end of the colour scale (default: the 99th percentile, so a few outliers do not wash
        out the rest).
    show
        Call ``plt.show()``.
    save
        Write the figure to this path.

    Returns
    -------
    Array of matplotlib axes: one panel for 2-D layouts, the three projections on the principal axes
    for 3-D layouts.

    Examples
    --------
    >>> coords = model.get_latent_coordinates(query, seed=0)
    >>> axes = sem.pl.uncertainty(query)

    With squidpy (not run here: importing squidpy takes seconds):

    >>> import squidpy as sq  # doctest: +SKIP
    >>> sq.pl.spatial_scatter(
    ...     query, spatial_key="X_spatialedm", shape=None, color="spatialedm_uncertainty"
    ... )  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    xy = _principal(_layout(adata, basis))
    if key not in adata.obs:
        raise KeyError(
            f"key {key!r} is not a column of adata.obs; run get_latent_coordinates(...) with its "
            "default uncertainty to write the per-cell uncertainty."
        )
    values = adata.obs[key].to_numpy(dtype=float)
    if vmax is None:
        finite = values[np.isfinite(values)]
        vmax = float(np.percentile(finite, 99)) if finite.size else None
    pairs = _projections(xy.shape[1])
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.8 * len(pairs), 4.5), squeeze=False)
    sc = None
    for ax, (a, b) in zip(axes[0], pairs):
        sc = _scatter(ax, xy[:, [a, b]], values, None, point_size, cmap=cmap, vmin=0.0, vmax=vmax)
        ax.set_title(f"uncertainty, axes {a + 1}-{b + 1}" if len(pairs) > 1 else "uncertainty")
    fig.colorbar(sc, ax=list(axes[0]), shrink=0.8, label=key)
    _finish(fig, show, save)
    return axes[0]


def history(
    model,
    keys: tuple[str, ...] | None = None,
    show: bool = False,
    save: str | PathLike | None = None,
):
    """Training and validation losses of each stage over the epochs.

    Parameters
    ----------
    model
        A trained :class:`~spatialedm.SpatialEDM`.
    keys
        History keys to draw (default: the per-stage train and validation losses).
    show
        Call ``plt.show()``.
    save
        Write the figure to this path.

    Returns
    -------
    Array of the three matplotlib axes (encoder, generator, refiner stages).

    Examples
    --------
    >>> axes = sem.pl.history(model, save="history.png")
    """
    import matplotlib.pyplot as plt

    hist = getattr(model, "history", None)
    if not hist:
        raise ValueError("The model has no training history; train it first.")
    stages = ("encoder", "generator", "refiner")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, stage in zip(axes, stages):
        for split in ("train", "validation"):
            key = f"{split}_loss_{stage}"
            if (keys is None or key in keys) and key in hist:
                series = hist[key].dropna()
                ax.plot(series.index, series.iloc[:, 0].to_numpy(dtype=float), label=split)
        ax.set_title(f"{stage} stage")
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(frameon=False)
    axes[0].set_ylabel("loss")
    fig.tight_layout()
    _finish(fig, show, save)
    return axes


def sigma_diagnostics(
    df: pd.DataFrame,
    quantities: tuple[str, ...] = DIAGNOSTIC_QUANTITIES,
    title: str | None = None,
    show: bool = False,
    save: str | PathLike | None = None,
):
    """Plot the refiner's behaviour against the noise level σ, one panel per quantity.

    Parameters
    ----------
    df
        One row per noise level, with column ``sigma_over_data`` (σ/σ_data, drawn on a log axis) and,
        for each quantity ``q``, ``{q}_output`` (the refined layout) and optionally ``{q}_input``
        (the noisy input), ``{q}_ideal`` (dashed reference line) and ``{q}_output_std`` (shaded band
        of ± one standard deviation around the output). A missing column just omits its line; a
        quantity without any column gets no panel. Rows with the same ``sigma_over_data`` are averaged.
    quantities
        Quantities to draw, in panel order (default ``scale_ratio``, ``patch_jaccard``,
        ``distance_spearman``, ``fx_ratio``).
    title
        Figure title.
    show
        Call ``plt.show()``.
    save
        Write the figure to this path.

    Returns
    -------
    Array of matplotlib axes, one per quantity drawn.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame(
    ...     {
    ...         "sigma_over_data": [0.1, 1.0, 10.0],
    ...         "patch_jaccard_output": [0.5, 0.4, 0.2],
    ...         "patch_jaccard_input": [0.45, 0.1, 0.0],
    ...     }
    ... )
    >>> axes = sigma_diagnostics(df)
    """
    import matplotlib.pyplot as plt

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
    if "sigma_over_data" not in df:
        raise KeyError(f"df has no column 'sigma_over_data'; its columns are {list(df.columns)}.")
    suffixes = ("_output", "_input", "_ideal", "_output_std")
    present = [q for q in quantities if any(f"{q}{s}" in df for s in suffixes)]
    if not present:
        raise ValueError(
            f"df has no column for any of the quantities {list(quantities)} (expected e.g. "
            f"'{quantities[0]}_output'); its columns are {list(df.columns)}."
        )
    sigma = pd.to_numeric(df["sigma_over_data"], errors="raise")
    if (sigma <= 0).any():
        raise ValueError("sigma_over_data must be positive (it is drawn on a log axis).")
    data = df.assign(sigma_over_data=sigma).groupby("sigma_over_data", sort=True).mean(numeric_only=True)
    x = data.index.to_numpy(dtype=float)
    fig, axes = plt.subplots(1, len(present), figsize=(3.6 * len(present), 3.2), squeeze=False)
    axes = axes[0]
    for ax, q in zip(axes, present):
        if f"{q}_output" in data:
            y = data[f"{q}_output"].to_numpy(dtype=float)
            (line,) = ax.plot(x, y, marker="o", ms=3, label="output")
            if f"{q}_output_std" in data:
                s = data[f"{q}_output_std"].to_numpy(dtype=float)
                ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.2, linewidth=0)
        if f"{q}_input" in data:
            ax.plot(
                x, data[f"{q}_input"].to_numpy(dtype=float), marker=".", ls=":", color="grey", label="input"
            )
        if f"{q}_ideal" in data:
            ax.plot(x, data[f"{q}_ideal"].to_numpy(dtype=float), ls="--", color="black", lw=1, label="ideal")
        ax.set_xscale("log")
        if q == "scale_ratio":
            # the noisy input grows like σ while the outputs shrink below 1: both read on a log axis
            ax.set_yscale("log")
        ax.set_xlabel("σ / σ_data")
        ax.set_title(q)
        ax.legend(frameon=False, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _finish(fig, show, save)
    return axes
