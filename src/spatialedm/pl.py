"""Plots of reconstructed layouts and training curves (matplotlib; squidpy works on the output key too).

``get_latent_coordinates`` writes ``obsm["X_spatialedm"]``, so squidpy's
``sq.pl.spatial_scatter(adata, spatial_key="X_spatialedm", shape=None, color=...)`` and scanpy's
``sc.pl.embedding(adata, basis="spatialedm", color=...)`` both draw it directly.
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .geometry import align_numpy


def _values(adata: AnnData, color: str | None):
    if color is None:
        return None, None
    if color in adata.obs:
        col = adata.obs[color]
        if col.dtype.name == "category" or col.dtype == object:
            cats = col.astype("category")
            return cats.cat.codes.to_numpy(), list(cats.cat.categories)
        return col.to_numpy(dtype=float), None
    if color in adata.var_names:
        x = adata[:, color].X
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        return x.ravel().astype(float), None
    raise KeyError(f"color {color!r} is neither a column of adata.obs nor a gene in adata.var_names.")


def reconstruction(
    adata: AnnData,
    basis: str = "X_spatialedm",
    truth: str | None = None,
    color: str | None = None,
    point_size: float = 4.0,
    show: bool = False,
):
    """Draw a reconstructed layout, beside the true one (aligned by rotation, reflection and scale).

    Parameters
    ----------
    adata
        AnnData with the layout in ``obsm[basis]``.
    basis
        ``obsm`` key of the reconstruction.
    truth
        ``obsm`` key of true coordinates; the reconstruction is aligned onto them and drawn beside.
    color
        ``obs`` column or gene to colour by; by default, with ``truth``, each cell's position along
        the first principal axis of the true layout, so that misplaced cells stand out.
    point_size
        Marker size.
    show
        Call ``plt.show()``.

    Returns
    -------
    The matplotlib figure (its axes are ``fig.axes``). 3-D layouts are drawn as projections on the
    first two principal axes.

    Examples
    --------
    >>> fig = sem.pl.reconstruction(query, truth="spatial")  # doctest: +SKIP
    >>> fig.savefig("layout.png")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if basis not in adata.obsm:
        raise KeyError(
            f"basis {basis!r} not in adata.obsm {list(adata.obsm.keys())}; run get_latent_coordinates."
        )
    pred = np.asarray(adata.obsm[basis], dtype=float)
    panels = []
    values, cats = _values(adata, color)
    if truth is not None:
        if truth not in adata.obsm:
            raise KeyError(f"truth {truth!r} not in adata.obsm {list(adata.obsm.keys())}.")
        true = np.asarray(adata.obsm[truth], dtype=float)
        true = true - true.mean(0)
        _, _, vt = np.linalg.svd(true, full_matrices=False)
        true_2d = true @ vt.T[:, :2]
        pad = np.zeros((len(pred), max(true.shape[1], pred.shape[1])))
        pad[:, : pred.shape[1]] = pred
        tpad = np.zeros_like(pad)
        tpad[:, : true.shape[1]] = true
        aligned = align_numpy(pad, tpad, scale=True)[:, : true.shape[1]] @ vt.T[:, :2]
        if values is None:
            values = true_2d[:, 0]
        panels = [("true layout", true_2d), ("reconstruction (aligned)", aligned)]
    else:
        p = pred - pred.mean(0)
        if p.shape[1] > 2:
            _, _, vt = np.linalg.svd(p, full_matrices=False)
            p = p @ vt.T[:, :2]
        panels = [("reconstruction", p)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, xy) in zip(axes[0], panels):
        sc = ax.scatter(
            xy[:, 0], xy[:, 1], c=values, s=point_size, cmap="tab20" if cats else "viridis", linewidths=0
        )
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if cats:
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(i)), label=c)
            for i, c in enumerate(cats)
        ]
        axes[0, -1].legend(
            handles=handles, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False, fontsize=7
        )
    if show:
        plt.show()
    return fig


def history(model, keys: tuple[str, ...] | None = None, show: bool = False):
    """Training and validation losses of each stage over the epochs.

    Parameters
    ----------
    model
        A trained :class:`~spatialedm.SpatialEDM`.
    keys
        History keys to draw (default: the per-stage train and validation losses).
    show
        Call ``plt.show()``.

    Returns
    -------
    The matplotlib figure.

    Examples
    --------
    >>> fig = sem.pl.history(model)  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    hist = model.history
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
        ax.legend(frameon=False)
    axes[0].set_ylabel("loss")
    fig.tight_layout()
    if show:
        plt.show()
    return fig
