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
    var_names = _unique_names(var_names, what)
    genes = pd.Index(genes)
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


def _unique_names(var_names, what: str) -> pd.Index:
    var_names = pd.Index(var_names)
    if not var_names.is_unique:
        dup = var_names[var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(f"The {what} has duplicated gene names in var_names, e.g. {dup}; make them unique.")
    return var_names


def require_all_genes(var_names, genes, *, what: str) -> None:
    """Refuse an AnnData that lacks any of the model's ``genes``, naming how many and the first few.

    The policy for the AnnData given to :meth:`~spatialedm.SpatialEDM.load`, which is meant to be the
    reference the model was trained on and therefore holds every one of its genes. Cells to place that
    lack some genes go to ``get_latent_coordinates`` instead, where :func:`match_genes` accepts them
    (missing genes at the reference mean, at least :data:`MIN_SHARED_FRACTION` of the genes shared).

    Parameters
    ----------
    var_names
        Gene names of the AnnData (must be unique).
    genes
        The model's genes.
    what
        How the AnnData is named in messages.

    Raises
    ------
    ValueError
        When ``var_names`` has duplicates or lacks any of ``genes``.

    Examples
    --------
    >>> require_all_genes(["c", "b", "a"], ["a", "b"], what="reference")
    >>> require_all_genes(["a"], ["a", "b", "c"], what="reference")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The reference shares 1 of the model's 3 genes: it lacks 2 (['b', 'c']). ...
    """
    var_names, genes = _unique_names(var_names, what), pd.Index(genes)
    missing = genes[var_names.get_indexer(genes) < 0]
    if len(missing):
        n_model = len(genes)
        shown = missing[:5].tolist()
        raise ValueError(
            f"The {what} shares {n_model - len(missing)} of the model's {n_model} genes: it lacks "
            f"{len(missing)} ({shown}{', ...' if len(missing) > len(shown) else ''}). The AnnData given to load "
            "is the reference the model was trained on and holds all of them: pass that one, or load without "
            "adata and pass cells that lack some genes to get_latent_coordinates (missing genes are set to "
            f"the reference mean there; at least {MIN_SHARED_FRACTION:.0%} of the model's genes are needed)."
        )
