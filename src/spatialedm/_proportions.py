"""Tissue proportions: measure the reference tissue's, and stretch layouts towards them.

A layout placed from expression is narrower than its tissue along the directions that expression
predicts least: the best guess for a cell that could sit anywhere along an axis is the axis's middle,
so a cortex or a hypothalamus section comes out as a band. The reference measures how the tissue's
spread divides among its principal axes (the covariance eigenvalues as shares of their sum). Two uses:

- before the refiner, each set's generator layout is stretched to those shares
  (``ModelConfig.stretch_generator``; in training, to the set's own true shares), so the refiner
  corrects a layout with the tissue's proportions and learns which part of the stretch expression
  supports;
- ``get_latent_coordinates(shape_weight=...)`` stretches the returned layout itself, which then looks like
  the tissue at the cost of ordering cells along the stretched axis more noisily: an option for viewing.
"""

from __future__ import annotations

import numpy as np
import torch

from ._validation import check_fraction
from .geometry import center, split_sections, unit_rms

#: Largest factor by which one principal axis is stretched relative to another: a layout whose cells lie
#: almost on a line has no direction worth stretching by more.
MAX_STRETCH = 10.0


def tissue_proportions(coords: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """How a tissue's spread divides among its principal axes.

    Parameters
    ----------
    coords
        ``(n, d)`` coordinates.
    groups
        Section of each cell: measured per section (each in its own frame), then the median share per
        axis is taken and renormalised to sum 1.

    Returns
    -------
    ``(d,)`` shares of the total variance, largest first, summing to 1; zeros when no section has more
    than ``d`` cells with any spread.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> rect = rng.uniform(size=(2000, 2)) * [3.0, 1.0]  # a 3:1 rectangle: variances 9:1
    >>> tissue_proportions(rect).round(1)
    array([0.9, 0.1])
    """
    dim = np.shape(coords)[1]
    shares = []
    for x in split_sections(coords, groups):
        if len(x) <= dim:
            continue
        t = torch.from_numpy(x - x.mean(axis=0))[None]
        share, _ = variance_shares(t, torch.ones(t.shape[:2], dtype=torch.bool))
        if share.sum() > 0:
            shares.append(share[0].numpy())
    if not shares:
        return np.zeros(dim)
    median = np.median(shares, axis=0)
    return median / median.sum()


def variance_shares(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each set's covariance eigenvalues as shares of their sum (largest first), and the eigenvectors.

    Parameters
    ----------
    x
        ``(B, N, d)`` centred layouts, zero on padding.
    mask
        ``(B, N)`` boolean mask of real cells.

    Returns
    -------
    ``(shares, vectors)``: ``(B, d)`` shares (zero for a set without spread) and ``(B, d, d)`` eigenvectors
    as columns, in the same order.
    """
    n = mask.sum(dim=1).clamp_min(1).to(x.dtype)[:, None, None]
    values, vectors = torch.linalg.eigh(x.transpose(1, 2) @ x / n)
    values, vectors = values.flip(-1).clamp_min(0), vectors.flip(-1)
    total = values.sum(-1, keepdim=True)
    return torch.where(total > 0, values / total.clamp_min(1e-300), torch.zeros_like(values)), vectors


def stretch_to_proportions(
    x: torch.Tensor, mask: torch.Tensor, proportions: torch.Tensor, weight: float = 1.0
) -> torch.Tensor:
    """Stretch each set's layout along its own principal axes towards the given variance shares.

    The principal axes keep their directions and order (the largest share goes to the set's own
    longest axis); each is rescaled by ``(target share / current share) ** (weight / 2)``, so that at
    ``weight=1`` the axes' variances take the shares exactly. No axis is stretched by more than
    :data:`MAX_STRETCH` times another, and each set keeps its RMS. Computed in float64.

    Parameters
    ----------
    x
        ``(B, N, d)`` layouts.
    mask
        ``(B, N)`` boolean mask of real cells.
    proportions
        ``(d,)`` or ``(B, d)`` shares, largest first (from :func:`tissue_proportions`). A zero share
        (a flat axis) is read as the smallest that :data:`MAX_STRETCH` allows; a set whose target is all
        zero, or that has no spread, is only centred.
    weight
        How far to move towards the shares, in ``[0, 1]``.

    Returns
    -------
    ``(B, N, d)`` centred layouts, zero on padding, in ``x``'s dtype.
    """
    w = mask.unsqueeze(-1).to(torch.float64)
    xd = center(x.to(torch.float64), mask)  # zero on padding
    target = proportions.to(device=x.device, dtype=torch.float64).expand(x.shape[0], x.shape[-1])
    # A flat axis (zero share: a section stored with a constant z) is squeezed as far as the bound
    # allows instead of disabling the stretch.
    target = torch.maximum(target, target.max(dim=-1, keepdim=True).values / MAX_STRETCH**2)
    shares, vectors = variance_shares(xd, mask)
    ok = (target > 0).all(-1) & (shares.sum(-1) > 0)
    scale = (target / shares.clamp_min(1e-12)) ** (weight / 2)
    scale = torch.minimum(scale, MAX_STRETCH * scale.min(dim=-1, keepdim=True).values)
    scale = torch.where(ok[:, None], scale, torch.ones_like(scale))
    y = ((xd @ vectors) * scale.unsqueeze(1)) @ vectors.transpose(1, 2)
    old = (xd**2).sum(dim=(1, 2), keepdim=True)
    y = y * torch.sqrt(old / (y**2).sum(dim=(1, 2), keepdim=True).clamp_min(1e-300))
    return (y * w).to(x.dtype)


def match_proportions(layout: np.ndarray, proportions: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """Stretch a whole layout along its principal axes towards the given variance shares.

    See :func:`stretch_to_proportions`: at ``weight=1`` the axes' variances take the shares exactly, at
    ``0.5`` their ratios move halfway on a log scale.

    Parameters
    ----------
    layout
        ``(n, d)`` layout.
    proportions
        ``(d,)`` shares from :func:`tissue_proportions`, largest first; all zero leaves the layout as
        it is.
    weight
        How far to move towards the shares, in ``[0, 1]``.

    Returns
    -------
    The layout, centred with unit per-axis RMS.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> band = rng.normal(size=(1000, 2)) * [3.0, 0.5]  # variances 36:1
    >>> square = match_proportions(band, np.array([0.5, 0.5]))
    >>> np.round(square.var(axis=0) / square.var(axis=0).sum(), 2)
    array([0.5, 0.5])
    """
    x = np.asarray(layout, dtype=np.float64)
    target = np.asarray(proportions, dtype=np.float64)
    if target.shape != (x.shape[1],):
        raise ValueError(f"`proportions` must have shape ({x.shape[1]},), got {target.shape}.")
    weight = check_fraction(weight, "weight")
    t = torch.from_numpy(x)[None]
    out = stretch_to_proportions(
        t, torch.ones(t.shape[:2], dtype=torch.bool), torch.from_numpy(target), weight
    )
    return unit_rms(out[0].numpy())


def check_shape_weight(shape_weight: float, proportions: np.ndarray) -> float:
    """``shape_weight`` as a float in [0, 1], or a ``ValueError`` naming what is wrong.

    A positive weight needs measured ``proportions`` (all zero: the model was saved before it measured
    its reference's and was loaded without the reference).
    """
    w = check_fraction(shape_weight, "shape_weight")
    if w > 0 and not (np.asarray(proportions) > 0).any():
        raise ValueError(
            "shape_weight > 0 needs the reference tissue's proportions, which this model has not measured "
            "(it was saved by an older version): load it with SpatialEDM.load(path, adata=reference)."
        )
    return w
