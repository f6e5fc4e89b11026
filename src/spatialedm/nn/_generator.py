"""Generator: direct prediction of a set's layout from its context ``H``."""

from __future__ import annotations

import torch
from torch import nn

from ..geometry import center
from ._set_attention import ISAB


class LayoutGenerator(nn.Module):
    """ISAB blocks and an MLP head that map context ``H`` to centred ``d``-dimensional coordinates.

    Parameters
    ----------
    dim
        Width of ``H``.
    n_spatial
        Output dimension ``d`` (2 or 3).
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
    >>> gen = LayoutGenerator(16, n_spatial=2, n_inducing=4, n_heads=2)
    >>> gen(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 2])
    """

    def __init__(
        self,
        dim: int,
        n_spatial: int,
        n_blocks: int = 2,
        n_inducing: int = 32,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.blocks = nn.ModuleList([ISAB(dim, n_inducing, n_heads, dropout) for _ in range(n_blocks)])
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, n_spatial))

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict centred coordinates ``(B, N, d)`` from ``h`` ``(B, N, dim)``."""
        for block in self.blocks:
            h = block(h, mask)
        return center(self.head(h), mask)
