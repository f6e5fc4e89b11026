"""Per-cell expression encoder (stage A, spatial-contrastive)."""

from __future__ import annotations

import torch
from torch import nn


class ExpressionEncoder(nn.Module):
    """MLP from preprocessed expression to a per-cell embedding ``Z``.

    Parameters
    ----------
    n_input
        Number of genes.
    n_hidden
        Width of the hidden layers.
    n_latent
        Dimension of the embedding.
    n_layers
        Number of hidden layers.
    dropout
        Dropout rate in the hidden layers.

    Examples
    --------
    >>> enc = ExpressionEncoder(20, n_hidden=32, n_latent=8)
    >>> enc(torch.randn(5, 20)).shape
    torch.Size([5, 8])
    """

    def __init__(
        self, n_input: int, n_hidden: int = 256, n_latent: int = 64, n_layers: int = 2, dropout: float = 0.1
    ):
        super().__init__()
        layers: list[nn.Module] = []
        d = n_input
        for _ in range(n_layers):
            layers += [nn.Linear(d, n_hidden), nn.LayerNorm(n_hidden), nn.GELU(), nn.Dropout(dropout)]
            d = n_hidden
        layers.append(nn.Linear(d, n_latent))
        self.net = nn.Sequential(*layers)
        # Separate projection head for the contrastive loss (SimCLR practice): the loss shapes the
        # head's space, the embedding below it keeps more information for the later stages.
        self.projection = nn.Sequential(
            nn.Linear(n_latent, n_latent), nn.GELU(), nn.Linear(n_latent, n_latent)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed expression ``x`` of shape ``(..., n_input)``."""
        return self.net(x)
