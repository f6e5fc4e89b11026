"""Small real data sets shipped with the package and a synthetic tissue generator."""

from __future__ import annotations

from ._real import drosophila_embryo, drosophila_scrna, osmfish_cortex, osmfish_scrna
from ._synthetic import synthetic_tissue

__all__ = ["drosophila_embryo", "drosophila_scrna", "osmfish_cortex", "osmfish_scrna", "synthetic_tissue"]
