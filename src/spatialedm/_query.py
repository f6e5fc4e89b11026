"""Query expression: genes matched to the reference by name, preprocessed row block by row block.

Preprocessing a query never densifies it whole: per-batch gene means are computed in chunks and
rows are transformed on demand, so memory stays linear in the number of cells.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._preprocessing import TARGET_SUM, ExpressionScaler, looks_like_counts

logger = logging.getLogger(__name__)

_CHUNK = 20_000
#: A query sharing fewer than this fraction of the reference genes is refused.
MIN_SHARED_FRACTION = 0.25


class QueryExpression:
    """A query AnnData seen through the reference's gene order and preprocessing.

    Parameters
    ----------
    adata
        Query cells (raw counts or log-normalised expression; dense, sparse or backed).
    ref_genes
        Reference gene names, in model order.
    scaler
        The reference's fitted :class:`~spatialedm._preprocessing.ExpressionScaler`.
    layer
        Layer holding expression; ``None`` for ``adata.X``.
    batch_key
        ``obs`` column whose categories are centred separately; the query is one batch otherwise.
    """

    def __init__(
        self,
        adata: AnnData,
        ref_genes: pd.Index,
        scaler: ExpressionScaler,
        layer: str | None = None,
        batch_key: str | None = None,
    ):
        if adata.n_obs == 0:
            raise ValueError("The query AnnData has no cells (n_obs == 0).")
        if not adata.var_names.is_unique:
            dup = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
            raise ValueError(
                f"The query has duplicated gene names in var_names, e.g. {dup}; make them unique."
            )
        if layer is not None and layer not in adata.layers:
            raise KeyError(f"Layer {layer!r} not found in the query's layers {list(adata.layers.keys())}.")
        self.X = adata.layers[layer] if layer is not None else adata.X
        pos = adata.var_names.get_indexer(ref_genes)
        self.shared = pos >= 0
        n_shared, n_ref = int(self.shared.sum()), len(ref_genes)
        if n_shared < max(1, int(np.ceil(MIN_SHARED_FRACTION * n_ref))):
            raise ValueError(
                f"The query shares {n_shared} of the model's {n_ref} genes (matched by var_names); at least "
                f"{max(1, int(np.ceil(MIN_SHARED_FRACTION * n_ref)))} are needed. Check that both use the same "
                "gene identifiers (symbols vs. Ensembl IDs)."
            )
        if n_shared < n_ref:
            warnings.warn(
                f"The query shares {n_shared} of the model's {n_ref} genes; the {n_ref - n_shared} missing genes "
                "are set to the reference mean.",
                UserWarning,
                stacklevel=3,
            )
        self.cols = pos[self.shared]
        self.n_obs = adata.n_obs
        self.n_genes = n_ref
        self.scale = scaler.scale[self.shared]
        self.is_counts = looks_like_counts(self._raw(np.arange(min(self.n_obs, 2000))))
        if scaler.is_counts and not self.is_counts:
            logger.info("Reference expression is counts, the query looks log-normalised: using it as it is.")
        if batch_key is not None and batch_key in adata.obs:
            self.batch_codes, self.batch_names = pd.factorize(adata.obs[batch_key].to_numpy())
        else:
            self.batch_codes, self.batch_names = np.zeros(self.n_obs, dtype=np.int64), pd.Index(["query"])
        self.means = self._batch_means()

    def _raw(self, idx: np.ndarray) -> np.ndarray:
        # Backed datasets and sparse matrices both support sorted integer row indexing.
        order = np.argsort(idx)
        block = self.X[idx[order]]
        if hasattr(block, "to_memory"):
            block = block.to_memory()
        block = block[:, self.cols]
        block = block.toarray() if sparse.issparse(block) else np.asarray(block)
        out = np.empty_like(block, dtype=np.float32)
        out[order] = block
        return out

    def _lognorm(self, block: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(block)):
            raise ValueError("Query expression contains NaN or infinite values.")
        if not self.is_counts:
            return block
        lib = block.sum(1, keepdims=True)
        lib[lib == 0] = 1.0
        return np.log1p(block / lib * TARGET_SUM).astype(np.float32)

    def _batch_means(self) -> np.ndarray:
        sums = np.zeros((len(self.batch_names), len(self.cols)), dtype=np.float64)
        counts = np.bincount(self.batch_codes, minlength=len(self.batch_names)).astype(np.float64)
        for start in range(0, self.n_obs, _CHUNK):
            idx = np.arange(start, min(start + _CHUNK, self.n_obs))
            block = self._lognorm(self._raw(idx))
            if len(self.batch_names) == 1:
                sums[0] += block.sum(0)
            else:
                np.add.at(sums, self.batch_codes[idx], block)
        return (sums / counts[:, None]).astype(np.float32)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Model input for cells ``idx``: ``(len(idx), n_genes)`` float32, missing genes zero."""
        idx = np.asarray(idx)
        block = self._lognorm(self._raw(idx))
        block -= self.means[self.batch_codes[idx]]
        block /= self.scale
        out = np.zeros((len(idx), self.n_genes), dtype=np.float32)
        out[:, self.shared] = block
        return out
