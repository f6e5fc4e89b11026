"""Expression preprocessing: library-size normalisation, log1p and per-batch gene centring.

Per-batch centring removes section and technology offsets (DESIGN.md decision 6) without any
adversarial term. The reference's per-gene spread is stored and reused for every query, so that a
query is scaled exactly like the cells the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

#: Library size that counts are normalised to before ``log1p``.
TARGET_SUM = 1e4
_MIN_SCALE = 1e-3


def looks_like_counts(X, n_check: int = 2000) -> bool:
    """Return whether ``X`` holds non-negative integers (raw counts), judged on up to ``n_check`` rows.

    Parameters
    ----------
    X
        Dense array or scipy sparse matrix, cells × genes.
    n_check
        Number of leading rows inspected.

    Returns
    -------
    ``True`` when every inspected value is a non-negative integer.

    Examples
    --------
    >>> import numpy as np
    >>> looks_like_counts(np.array([[0.0, 3.0], [1.0, 2.0]]))
    True
    """
    sub = X[: min(n_check, X.shape[0])]
    vals = sub.data if sparse.issparse(sub) else np.asarray(sub)
    vals = np.asarray(vals, dtype=np.float64)
    if vals.size == 0:
        return True
    return bool(np.all(vals >= 0) and np.all(np.abs(vals - np.round(vals)) < 1e-6))


def log_normalize(X, is_counts: bool) -> np.ndarray:
    """Normalise to :data:`TARGET_SUM` counts per cell and take ``log1p`` (counts), or densify (log data).

    Parameters
    ----------
    X
        Dense array or scipy sparse matrix, cells × genes.
    is_counts
        Whether ``X`` holds raw counts.

    Returns
    -------
    Dense ``float32`` array of the same shape.
    """
    if sparse.issparse(X):
        X = X.toarray()
    X = np.asarray(X, dtype=np.float32)
    if not is_counts:
        return X.copy() if not X.flags.writeable else X.astype(np.float32, copy=True)
    lib = X.sum(axis=1, keepdims=True)
    lib[lib == 0] = 1.0
    return np.log1p(X / lib * TARGET_SUM).astype(np.float32)


def center_by_batch(X: np.ndarray, batches: np.ndarray | None) -> np.ndarray:
    """Subtract each batch's per-gene mean, in place, and return ``X``.

    Parameters
    ----------
    X
        Dense ``float32`` array, cells × genes (modified in place).
    batches
        Batch label per cell, or ``None`` to treat all cells as one batch.

    Returns
    -------
    The centred array.
    """
    if batches is None:
        X -= X.mean(axis=0, keepdims=True)
        return X
    codes, _ = pd.factorize(np.asarray(batches))
    for b in np.unique(codes):
        idx = codes == b
        X[idx] -= X[idx].mean(axis=0, keepdims=True)
    return X


@dataclass
class ExpressionScaler:
    """Turns expression into the model's input: log-normalised, centred per batch, scaled per gene.

    Parameters
    ----------
    is_counts
        Whether the registered expression holds raw counts.
    scale
        Per-gene standard deviation of the centred reference, set by :meth:`fit`.
    per_gene
        Scale each gene by its own spread; otherwise all genes by the root-mean-square spread.

    Examples
    --------
    >>> import numpy as np
    >>> scaler = ExpressionScaler(is_counts=True)
    >>> X = np.random.default_rng(0).poisson(3, size=(50, 4))
    >>> Z = scaler.fit_transform(X, batches=None)
    >>> Z.shape
    (50, 4)
    """

    is_counts: bool
    scale: np.ndarray | None = None
    per_gene: bool = True

    def fit_transform(self, X, batches: np.ndarray | None) -> np.ndarray:
        """Fit the per-gene scale on the reference and return its transformed expression."""
        Z = center_by_batch(log_normalize(X, self.is_counts), batches)
        std = Z.std(axis=0)
        if not self.per_gene:
            std = np.full_like(std, np.sqrt((std**2).mean()))
        self.scale = np.maximum(std, _MIN_SCALE).astype(np.float32)
        Z /= self.scale
        return Z

    def transform(self, X, batches: np.ndarray | None) -> np.ndarray:
        """Transform a query with the reference's scale; the query is centred by its own batches."""
        if self.scale is None:
            raise RuntimeError("ExpressionScaler.transform called before fit_transform.")
        Z = center_by_batch(log_normalize(X, self.is_counts), batches)
        Z /= self.scale
        return Z

    def state_dict(self) -> dict:
        """Return a picklable description of the scaler."""
        return {
            "is_counts": self.is_counts,
            "scale": None if self.scale is None else self.scale.tolist(),
            "per_gene": self.per_gene,
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> ExpressionScaler:
        """Rebuild a scaler from :meth:`state_dict`."""
        scale = None if state["scale"] is None else np.asarray(state["scale"], dtype=np.float32)
        return cls(is_counts=state["is_counts"], scale=scale, per_gene=state.get("per_gene", True))
