"""Set attention (Set Transformer, Lee et al. 2019): MAB, ISAB and the context encoder.

ISAB attends through ``m`` inducing points, so cost and memory are linear in the set size.
"""

from __future__ import annotations

import torch
from torch import nn


class MAB(nn.Module):
    """Multihead attention block: ``LN(h + FF(h))`` with ``h = LN(q + Attn(q, kv))``.

    Parameters
    ----------
    dim
        Feature dimension.
    n_heads
        Number of attention heads.
    dropout
        Dropout inside attention and feed-forward.
    """

    def __init__(self, dim: int, n_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``q`` ``(B, Nq, dim)`` to ``kv`` ``(B, Nk, dim)``; ``kv_mask`` marks real keys."""
        pad = None if kv_mask is None else ~kv_mask
        h = self.ln1(q + self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)[0])
        return self.ln2(h + self.ff(h))


class ISAB(nn.Module):
    """Induced set attention block: points → ``m`` inducing points → points.

    Parameters
    ----------
    dim
        Feature dimension.
    n_inducing
        Number of inducing points ``m``.
    n_heads
        Number of attention heads.
    dropout
        Dropout rate.

    Examples
    --------
    >>> block = ISAB(16, n_inducing=4, n_heads=2)
    >>> block(torch.randn(3, 10, 16)).shape
    torch.Size([3, 10, 16])
    """

    def __init__(self, dim: int, n_inducing: int = 32, n_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(1, n_inducing, dim) / dim**0.5)
        self.mab_in = MAB(dim, n_heads, dropout)
        self.mab_out = MAB(dim, n_heads, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Update ``x`` ``(B, N, dim)`` given the boolean mask ``(B, N)`` of real points."""
        summary = self.mab_in(self.inducing.expand(x.shape[0], -1, -1), x, mask)
        return self.mab_out(x, summary)


class SetContextEncoder(nn.Module):
    """Each cell's embedding in the context of the whole set: ``Z → H``.

    Parameters
    ----------
    n_input
        Dimension of the per-cell embedding ``Z``.
    dim
        Width of the set-attention stack (and of ``H``).
    n_blocks
        Number of ISAB blocks.
    n_inducing
        Inducing points per block.
    n_heads
        Attention heads.
    dropout
        Dropout rate.
    """

    def __init__(
        self,
        n_input: int,
        dim: int = 128,
        n_blocks: int = 2,
        n_inducing: int = 32,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.inp = nn.Linear(n_input, dim)
        self.blocks = nn.ModuleList([ISAB(dim, n_inducing, n_heads, dropout) for _ in range(n_blocks)])

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Contextualise ``z`` ``(B, N, n_input)``."""
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, mask)
        return h
