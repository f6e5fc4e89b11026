"""Small real data sets shipped with the package, a synthetic tissue generator and held-out splits."""

from __future__ import annotations

from ._real import drosophila_embryo, drosophila_scrna, osmfish_cortex, osmfish_scrna
from ._splits import split_by_mask, split_halves
from ._spots import pool_spots
from ._synthetic import synthetic_tissue

__all__ = [
    "drosophila_embryo",
    "drosophila_scrna",
    "osmfish_cortex",
    "osmfish_scrna",
    "pool_spots",
    "split_by_mask",
    "split_halves",
    "synthetic_tissue",
]
