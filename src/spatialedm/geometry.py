"""Gauge-invariant geometry on padded point sets: centring, RMS normalisation and Kabsch over O(d).

A layout predicted from expression is defined only up to translation, rotation and reflection
(the "gauge"), so every loss aligns the target onto the prediction before comparing them. Point sets are batched as ``(B, N, d)`` tensors with a boolean ``mask``
``(B, N)`` marking the real points of each set.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

_EPS = 1e-8


def _weights(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)
    return mask.to(x.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real points of each set.

    Parameters
    ----------
    x
        ``(B, N, d)`` points.
    mask
        ``(B, N)`` boolean mask of real points, or ``None`` when all are real.

    Returns
    -------
    ``(B, 1, d)`` centroids.
    """
    w = _weights(x, mask).unsqueeze(-1)
    return (x * w).sum(-2, keepdim=True) / w.sum(-2, keepdim=True).clamp_min(1.0)


def center(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Subtract each set's centroid; padded points are set to zero.

    Parameters
    ----------
    x
        ``(B, N, d)`` points.
    mask
        ``(B, N)`` boolean mask of real points.

    Returns
    -------
    Centred points of the same shape.
    """
    xc = x - masked_mean(x, mask)
    return xc * _weights(x, mask).unsqueeze(-1)


def rms(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-axis root mean square of each (already centred) set.

    Parameters
    ----------
    x
        ``(B, N, d)`` centred points.
    mask
        ``(B, N)`` boolean mask of real points.

    Returns
    -------
    ``(B,)`` values of ``sqrt(sum ||x_i||^2 / (n d))``.
    """
    w = _weights(x, mask)
    n = w.sum(-1).clamp_min(1.0)
    return torch.sqrt((x.pow(2).sum(-1) * w).sum(-1) / (n * x.shape[-1]) + _EPS)


def normalize(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Centre each set and scale it to unit per-axis RMS.

    Parameters
    ----------
    x
        ``(B, N, d)`` points.
    mask
        ``(B, N)`` boolean mask of real points.

    Returns
    -------
    Normalised points; the per-entry standard deviation of the real points is 1.

    Examples
    --------
    >>> x = torch.randn(2, 10, 2) * 5 + 3
    >>> y = normalize(x)
    >>> torch.allclose(rms(y), torch.ones(2), atol=1e-4)
    True
    """
    xc = center(x, mask)
    return xc / rms(xc, mask)[:, None, None]


def kabsch(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Orthogonal matrix ``R`` in O(d) minimising ``||source @ R - target||`` for centred sets.

    Reflections are allowed: a layout and its mirror image carry the same intrinsic geometry.

    Parameters
    ----------
    source, target
        ``(B, N, d)`` centred point sets.
    mask
        ``(B, N)`` boolean mask of real points.

    Returns
    -------
    ``(B, d, d)`` orthogonal matrices.

    Examples
    --------
    >>> x = torch.randn(1, 20, 2)
    >>> rot = torch.tensor([[[0.0, -1.0], [1.0, 0.0]]])
    >>> torch.allclose(kabsch(x, x @ rot), rot, atol=1e-5)
    True
    """
    w = _weights(source, mask).unsqueeze(-1)
    cov = (source * w).transpose(-1, -2) @ target
    # SVD in float64 on the CPU-side precision: the d x d problem is tiny and float32 SVD of
    # nearly degenerate covariances gives noisy rotations.
    u, _, vh = torch.linalg.svd(cov.double())
    return (u @ vh).to(source.dtype)


def align(
    source: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    scale: bool = False,
) -> torch.Tensor:
    """Move ``source`` onto ``target`` by translation, O(d) and optionally a global scale.

    Parameters
    ----------
    source, target
        ``(B, N, d)`` point sets (not necessarily centred).
    mask
        ``(B, N)`` boolean mask of real points.
    scale
        Also fit a global scale factor.

    Returns
    -------
    ``source`` in the frame of ``target``.
    """
    mu_t = masked_mean(target, mask)
    s_c = center(source, mask)
    t_c = center(target, mask)
    r = kabsch(s_c, t_c, mask)
    out = s_c @ r
    if scale:
        w = _weights(source, mask)
        num = ((out * t_c).sum(-1) * w).sum(-1)
        den = ((out * out).sum(-1) * w).sum(-1).clamp_min(_EPS)
        out = out * (num / den).clamp_min(0.0)[:, None, None]
    return (out + mu_t) * _weights(source, mask).unsqueeze(-1)


def aligned_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-set mean squared error after aligning the detached target onto the prediction.

    Parameters
    ----------
    pred, target
        ``(B, N, d)`` point sets.
    mask
        ``(B, N)`` boolean mask of real points.

    Returns
    -------
    ``(B,)`` per-entry mean squared errors.
    """
    t = align(target.detach(), pred.detach(), mask)
    w = _weights(pred, mask)
    err = ((pred - t).pow(2).sum(-1) * w).sum(-1)
    return err / (w.sum(-1).clamp_min(1.0) * pred.shape[-1])


def random_orthogonal(
    batch: int, dim: int, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Draw Haar-random matrices from O(d) (rotations and reflections).

    Parameters
    ----------
    batch
        Number of matrices.
    dim
        Dimension ``d``.
    generator
        Optional random generator.
    device
        Torch device of the result.

    Returns
    -------
    ``(batch, dim, dim)`` orthogonal matrices.
    """
    a = torch.randn(batch, dim, dim, generator=generator, device=device)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


class Similarity(NamedTuple):
    """A similarity transform ``x -> (x - mu_source) @ rotation * scale + mu_target``.

    ``mu_source`` and ``mu_target`` are the ``(d,)`` centroids of the two frames, ``rotation`` a ``(d, d)``
    orthogonal matrix (reflections allowed) and ``scale`` the global scale factor.
    """

    mu_source: np.ndarray
    rotation: np.ndarray
    scale: float
    mu_target: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Move ``(n, d)`` points from the source frame into the target frame."""
        return (points - self.mu_source) @ self.rotation * self.scale + self.mu_target

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Move ``(n, d)`` points from the target frame back into the source frame."""
        return (points - self.mu_target) / self.scale @ self.rotation.T + self.mu_source


def fit_similarity(source: np.ndarray, target: np.ndarray, scale: str = "lsq") -> Similarity:
    """Similarity (translation, O(d), global scale) taking ``source`` onto ``target`` (corresponding rows).

    Reflections are allowed: a layout and its mirror image carry the same intrinsic geometry.

    Parameters
    ----------
    source, target
        ``(n, d)`` corresponding points in two frames.
    scale
        ``"lsq"``: the least-squares scale (shrinks a noisy source towards its centre); ``"rms"``: match
        the two point sets' root-mean-square spreads; ``"none"``: no scaling.

    Returns
    -------
    The fitted :class:`Similarity`.

    Examples
    --------
    >>> a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> np.allclose(fit_similarity(a, 3 * a + 1).apply(np.array([[1.0, 1.0]])), [[4.0, 4.0]])
    True
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    u, _, vh = np.linalg.svd(s.T @ t)
    r = u @ vh
    if scale == "lsq":
        factor = float(np.sum((s @ r) * t) / max(np.sum(s * s), 1e-12))
    elif scale == "rms":
        factor = float(np.sqrt(max(np.sum(t * t), 1e-12) / max(np.sum(s * s), 1e-12)))
    elif scale == "none":
        factor = 1.0
    else:
        raise ValueError(f"scale must be 'lsq', 'rms' or 'none', got {scale!r}.")
    return Similarity(mu_s, r, max(factor, 1e-12), mu_t)


def align_numpy(source: np.ndarray, target: np.ndarray, scale: bool = True) -> np.ndarray:
    """Move ``source`` onto ``target`` (corresponding rows) by translation, O(d) and optionally scale.

    Parameters
    ----------
    source, target
        ``(n, d)`` arrays with corresponding rows.
    scale
        Also fit a global (least-squares) scale factor.

    Returns
    -------
    ``source`` moved onto ``target``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(30, 2))
    >>> np.allclose(align_numpy(2 * x[:, ::-1] + 1, x), x, atol=1e-6)
    True
    """
    return fit_similarity(source, target, scale="lsq" if scale else "none").apply(np.asarray(source, float))


def split_sections(coords, groups=None) -> list[np.ndarray]:
    """Each section's ``(n_g, d)`` float64 coordinates, in the order of ``np.unique(groups)``.

    Parameters
    ----------
    coords
        ``(n, d)`` coordinates of all cells.
    groups
        Section of each cell; ``None``: all cells form one section.

    Returns
    -------
    One array per section.

    Examples
    --------
    >>> [len(x) for x in split_sections(np.zeros((5, 2)), ["b", "a", "b", "b", "a"])]
    [2, 3]
    """
    coords = np.asarray(coords, dtype=np.float64)
    if groups is None:
        return [coords]
    groups = np.asarray(groups)
    return [coords[groups == g] for g in np.unique(groups)]


def unit_rms(x: np.ndarray) -> np.ndarray:
    """Centre an ``(n, d)`` layout and scale it to unit per-axis RMS.

    Parameters
    ----------
    x
        ``(n, d)`` layout.

    Returns
    -------
    The normalised layout.

    Examples
    --------
    >>> round(float(np.sqrt((unit_rms(np.array([[0.0, 0.0], [4.0, 0.0]])) ** 2).mean())), 6)
    1.0
    """
    x = x - x.mean(0)
    return x / max(np.sqrt((x**2).mean()), 1e-12)


def generalised_procrustes(sets: list[np.ndarray], n_iter: int = 5) -> np.ndarray:
    """Consensus layout of the same cells placed in several frames, up to similarity transforms.

    Used to bring overlapping subsets of a large query into one frame through their shared anchors.

    Parameters
    ----------
    sets
        Layouts ``(m, d)`` of the same ``m`` cells, rows in the same order.
    n_iter
        Alternations of aligning every layout onto the mean and re-estimating the mean.

    Returns
    -------
    ``(m, d)`` consensus, centred with unit per-axis RMS.
    """
    mean = unit_rms(sets[0])
    for _ in range(n_iter):
        mean = unit_rms(np.mean([fit_similarity(s, mean).apply(s) for s in sets], axis=0))
    return mean
