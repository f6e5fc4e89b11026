"""EDM (Karras et al. 2022) preconditioning, noise-level sampling, loss weight and Heun sampler.

Pure functions of ``sigma`` and ``sigma_data``; the denoiser network itself lives in
:mod:`spatialedm.nn`. ``sigma_data`` is the per-entry standard deviation of the quantity being
diffused (here the residual between the aligned target and the generator's layout).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def preconditioning(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """Return ``(c_skip, c_out, c_in, c_noise)`` for noise levels ``sigma``.

    Parameters
    ----------
    sigma
        Noise levels, any shape.
    sigma_data
        Standard deviation of the clean data.

    Returns
    -------
    The four EDM coefficients, each shaped like ``sigma``.

    Examples
    --------
    >>> c_skip, c_out, c_in, c_noise = preconditioning(torch.tensor([1.0]), 1.0)
    >>> float(c_skip), round(float(c_out), 4), round(float(c_in), 4), float(c_noise)
    (0.5, 0.7071, 0.7071, 0.0)
    """
    sd2 = sigma_data**2
    s2 = sigma**2
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma * sigma_data / torch.sqrt(s2 + sd2)
    c_in = 1.0 / torch.sqrt(s2 + sd2)
    c_noise = torch.log(sigma) / 4.0
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """EDM loss weight ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (unit effective weight).

    Parameters
    ----------
    sigma
        Noise levels.
    sigma_data
        Standard deviation of the clean data.

    Returns
    -------
    Weights shaped like ``sigma``.
    """
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_sigma(
    n: int, sigma_min: float, sigma_max: float, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Draw noise levels log-uniformly in ``[sigma_min, sigma_max]``.

    Log-uniform sampling covers exactly the range the sampler visits, so inference never starts
    from a noise level the model was not trained on.

    Parameters
    ----------
    n
        Number of levels.
    sigma_min, sigma_max
        Range of the levels.
    generator
        Optional random generator.
    device
        Torch device.

    Returns
    -------
    ``(n,)`` noise levels.
    """
    u = torch.rand(n, generator=generator, device=device)
    return torch.exp(math.log(sigma_min) + u * (math.log(sigma_max) - math.log(sigma_min)))


def karras_schedule(n_steps: int, sigma_max: float, sigma_min: float, rho: float = 7.0) -> torch.Tensor:
    """EDM noise schedule from ``sigma_max`` down to ``sigma_min``, followed by 0.

    Parameters
    ----------
    n_steps
        Number of noise levels above zero.
    sigma_max, sigma_min
        First and last non-zero level.
    rho
        Schedule curvature (7 in EDM).

    Returns
    -------
    ``(n_steps + 1,)`` decreasing levels ending in 0.

    Examples
    --------
    >>> karras_schedule(2, 4.0, 1.0).tolist()
    [4.0, 1.0, 0.0]
    """
    if n_steps == 1:
        return torch.tensor([sigma_max, 0.0])
    i = torch.arange(n_steps, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    s = (a + i / (n_steps - 1) * (b - a)) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)]).float()


def heun_sample(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
) -> torch.Tensor:
    """Deterministic EDM Heun sampler (Karras et al. 2022, Algorithm 1).

    Parameters
    ----------
    denoise
        ``denoise(x, sigma)`` returning the denoised estimate; ``sigma`` is a scalar tensor.
    x
        Starting point, already at noise level ``sigmas[0]``.
    sigmas
        Decreasing noise levels ending in 0 (see :func:`karras_schedule`).

    Returns
    -------
    The sample at noise level 0.

    Examples
    --------
    An exact denoiser of a point mass at 0 sends any start to 0:

    >>> out = heun_sample(lambda x, s: torch.zeros_like(x), torch.ones(3), karras_schedule(3, 2.0, 0.1))
    >>> torch.allclose(out, torch.zeros(3))
    True
    """
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - denoise(x, s)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_next - denoise(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_next)
        x = x_next
    return x
