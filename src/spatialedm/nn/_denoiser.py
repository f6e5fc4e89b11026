"""EDM denoiser of the residual between the target layout and the generator's layout."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._set_attention import ISAB


class _FourierNoiseEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * 4.0)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        ang = 2 * math.pi * c_noise[:, None] * self.freqs[None]
        return torch.cat([ang.cos(), ang.sin()], dim=-1)


class ResidualDenoiser(nn.Module):
    """Network ``F`` of the EDM denoiser ``D = c_skip x + c_out F(c_in x, c_noise; V_gen, H)``.

    Per-cell inputs are the scaled noisy residual, the generator's layout and the context ``H``;
    the noise level modulates every block by FiLM.

    Parameters
    ----------
    dim
        Width of ``H`` and of the network.
    n_spatial
        Dimension ``d`` of the layout.
    n_blocks
        Number of ISAB blocks.
    n_inducing
        Inducing points per block.
    n_heads
        Attention heads.
    dropout
        Dropout rate.

    Examples
    --------
    >>> net = ResidualDenoiser(16, n_spatial=2, n_inducing=4, n_heads=2)
    >>> x, v, h = torch.randn(2, 9, 2), torch.randn(2, 9, 2), torch.randn(2, 9, 16)
    >>> net(x, torch.zeros(2), v, h).shape
    torch.Size([2, 9, 2])
    """

    def __init__(
        self,
        dim: int,
        n_spatial: int,
        n_blocks: int = 3,
        n_inducing: int = 32,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.noise_embed = nn.Sequential(_FourierNoiseEmbedding(dim), nn.Linear(dim, dim), nn.GELU())
        self.inp = nn.Linear(dim + 2 * n_spatial, dim)
        self.blocks = nn.ModuleList([ISAB(dim, n_inducing, n_heads, dropout) for _ in range(n_blocks)])
        self.films = nn.ModuleList([nn.Linear(dim, 2 * dim) for _ in range(n_blocks)])
        for film in self.films:
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
        self.head = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, n_spatial)
        )
        # Zero output at initialisation: an untrained refiner leaves the generator's layout as it is.
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(
        self,
        x_in: torch.Tensor,
        c_noise: torch.Tensor,
        v_gen: torch.Tensor,
        h: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return ``F`` ``(B, N, d)`` for scaled noisy residual ``x_in`` and per-set ``c_noise`` ``(B,)``."""
        emb = self.noise_embed(c_noise)
        z = self.inp(torch.cat([h, x_in, v_gen], dim=-1))
        for block, film in zip(self.blocks, self.films):
            scale, shift = film(emb).unsqueeze(1).chunk(2, dim=-1)
            z = block(z * (1 + scale) + shift, mask)
        return self.head(z)
