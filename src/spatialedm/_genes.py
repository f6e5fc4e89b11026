"""Gene matching: one policy for every entry point that reads another AnnData's genes by name."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

#: A query (or any AnnData read through a model) sharing fewer than this fraction of the model's genes
#: is refused: so little overlap almost always means different gene identifiers.
MIN_SHARED_FRACTION = 0.25


class GeneMatch(NamedTuple):
    """Where the model's genes sit in another AnnData.

    Attributes
    ----------
    positions
        For each model gene, its column in the other AnnData, ``-1`` where it is missing.
    shared
        Boolean mask over the model's genes: present in the other AnnData.
    """

    positions: np.ndarray
    shared: np.ndarray

    @property
    def columns(self) -> np.ndarray:
        """Columns of the other AnnData holding the shared genes, in model order."""
        return self.positions[self.shared]


def match_genes(var_names, genes, *, what: str = "query", warn: bool = True) -> GeneMatch:
    """Match ``genes`` (the model's, in model order) against ``var_names`` of another AnnData.

    Parameters
    ----------
    var_names
        Gene names of the other AnnData (must be unique).
    genes
        The model's genes, in model order.
    what
        How the other AnnData is named in messages.
    warn
        Warn when some of the model's genes are missing (they are then set to the reference mean).

    Returns
    -------
    The positions of the model's genes in ``var_names`` and the mask of shared genes.

    Raises
    ------
    ValueError
        When ``var_names`` has duplicates or shares fewer than :data:`MIN_SHARED_FRACTION` of ``genes``.

    Examples
    --------
    >>> m = match_genes(["b", "a", "x"], ["a", "b", "c", "d"], warn=False)
    >>> m.positions.tolist(), m.shared.tolist()
    ([1, 0, -1, -1], [True, True, False, False])
    """
    var_names = pd.Index(var_names)
    genes = pd.Index(genes)
    if not var_names.is_unique:
        dup = var_names[var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(f"The {what} has duplicated gene names in var_names, e.g. {dup}; make them unique.")
    positions = var_names.get_indexer(genes)
    shared = positions >= 0
    n_shared, n_model = int(shared.sum()), len(genes)
    needed = max(1, int(np.ceil(MIN_SHARED_FRACTION * n_model)))
    if n_shared < needed:
        raise ValueError(
            f"The {what} shares {n_shared} of the model's {n_model} genes (matched by var_names); at least "
            f"{needed} ({MIN_SHARED_FRACTION:.0%}) are needed. Check that both use the same gene identifiers "
            "(symbols vs. Ensembl IDs)."
        )
    if warn and n_shared < n_model:
        missing = genes[~shared][:5].tolist()
        warnings.warn(
            f"The {what} shares {n_shared} of the model's {n_model} genes; the {n_model - n_shared} missing "
            f"genes (e.g. {missing}) are set to the reference mean.",
            UserWarning,
            stacklevel=3,
        )
    return GeneMatch(positions, shared)
