"""Gauge-invariant geometry on padded point sets: centring, RMS normalisation and Kabsch over O(d).

A layout predicted from expression is defined only up to translation, rotation and reflection
(the "gauge"), so every loss aligns the target onto the prediction before comparing them
(DESIGN.md decision 2). Point sets are batched as ``(B, N, d)`` tensors with a boolean ``mask``
``(B, N)`` marking the real points of each set.
"""

from __future__ import annotations

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


def align_numpy(source: np.ndarray, target: np.ndarray, scale: bool = True) -> np.ndarray:
    """NumPy front end of :func:`align` for one point set.

    Parameters
    ----------
    source, target
        ``(n, d)`` arrays with corresponding rows.
    scale
        Also fit a global scale factor.

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
    s = torch.as_tensor(np.asarray(source, dtype=np.float64))[None]
    t = torch.as_tensor(np.asarray(target, dtype=np.float64))[None]
    return align(s, t, None, scale=scale)[0].numpy()


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


def similarity_apply(src_anchor: np.ndarray, dst_anchor: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Fit the similarity (O(d), scale, translation) taking ``src_anchor`` onto ``dst_anchor``; apply it.

    Parameters
    ----------
    src_anchor, dst_anchor
        ``(m, d)`` corresponding anchor positions in two frames.
    points
        ``(n, d)`` further points in the source frame.

    Returns
    -------
    ``points`` in the destination frame.

    Examples
    --------
    >>> a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> np.allclose(similarity_apply(a, 3 * a + 1, np.array([[1.0, 1.0]])), [[4.0, 4.0]])
    True
    """
    mu_s, mu_d = src_anchor.mean(0), dst_anchor.mean(0)
    s, d = src_anchor - mu_s, dst_anchor - mu_d
    u, _, vh = np.linalg.svd(s.T @ d)
    r = u @ vh
    scale = max(float(np.sum((s @ r) * d) / max(np.sum(s * s), 1e-12)), 1e-12)
    return (points - mu_s) @ r * scale + mu_d


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
        mean = unit_rms(np.mean([similarity_apply(s, mean, s) for s in sets], axis=0))
    return mean
