"""Expression preprocessing: the one object that turns expression into the model's input.

Counts are library-size normalised with scanpy (:func:`scanpy.pp.normalize_total`) to the *reference's*
median library size, stored with the model and reused for every query, then ``log1p``-transformed.
Each gene is then centred per batch (a reference section, or a query's own batches), which removes
section and technology offsets without any adversarial term, and divided by the reference's spread.
The same :class:`Preprocessor`, fitted once on the reference, serves training, queries, baselines and
diagnostics; :class:`ExpressionView` applies it to any AnnData block by block, so memory stays linear in
the number of cells.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._genes import match_genes

logger = logging.getLogger(__name__)

_MIN_SCALE = 1e-3
#: Rows read and transformed at a time.
CHUNK_SIZE = 20_000


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
    if hasattr(sub, "to_memory"):
        sub = sub.to_memory()
    vals = sub.data if sparse.issparse(sub) else np.asarray(sub)
    vals = np.asarray(vals, dtype=np.float64)
    if vals.size == 0:
        return True
    return bool(np.all(vals >= 0) and np.all(np.abs(vals - np.round(vals)) < 1e-6))


def dense_rows(X, idx: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """Rows ``idx`` (and columns ``cols``) of a dense, sparse or backed matrix as a float32 array.

    Parameters
    ----------
    X
        Cells × genes matrix (``numpy``, ``scipy.sparse`` or an AnnData backed dataset).
    idx
        Row indices, in any order.
    cols
        Column indices (``None``: all columns).

    Returns
    -------
    ``(len(idx), n_cols)`` float32 array, rows in the order of ``idx``.
    """
    idx = np.asarray(idx)
    # Backed datasets and sparse matrices both support sorted integer row indexing.
    order = np.argsort(idx, kind="stable")
    block = X[idx[order]]
    if hasattr(block, "to_memory"):
        block = block.to_memory()
    if cols is not None:
        block = block[:, cols]
    block = block.toarray() if sparse.issparse(block) else np.asarray(block)
    out = np.empty(block.shape, dtype=np.float32)
    out[order] = block
    return out


def log_normalize(block: np.ndarray, target_sum: float) -> np.ndarray:
    """Library-size normalise ``block`` to ``target_sum`` counts per cell and take ``log1p`` (scanpy).

    Parameters
    ----------
    block
        Dense cells × genes counts.
    target_sum
        Library size every cell is scaled to.

    Returns
    -------
    Dense float32 log-normalised values; cells without counts stay zero.

    Examples
    --------
    >>> import numpy as np
    >>> log_normalize(np.array([[1.0, 3.0]]), target_sum=4.0).astype(float).round(3).tolist()
    [[0.693, 1.386]]
    """
    import scanpy as sc

    adata = AnnData(np.array(block, dtype=np.float32))
    with warnings.catch_warnings():
        # cells without counts stay at zero, which is what we want; the callers report them once
        warnings.filterwarnings("ignore", message="Some cells have zero counts", category=UserWarning)
        sc.pp.normalize_total(adata, target_sum=float(target_sum))
    sc.pp.log1p(adata)
    return np.asarray(adata.X, dtype=np.float32)


def batch_codes(
    obs: pd.DataFrame, batch_key: str | None, *, what: str = "query"
) -> tuple[np.ndarray, pd.Index]:
    """Integer batch code per cell from ``obs[batch_key]`` (one batch when the key is ``None`` or absent).

    Parameters
    ----------
    obs
        The AnnData's ``obs``.
    batch_key
        Column naming batches.
    what
        How the AnnData is named in messages.

    Returns
    -------
    ``(codes, names)``.

    Raises
    ------
    ValueError
        When the column has missing values.
    """
    if batch_key is None or batch_key not in obs:
        return np.zeros(len(obs), dtype=np.int64), pd.Index(["all"])
    col = obs[batch_key]
    missing = col.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"The {what}'s obs[{batch_key!r}] has {int(missing.sum())} missing values (NaN), e.g. in cells "
            f"{obs.index[np.flatnonzero(missing)[:3]].tolist()}; fill them (each value is a batch centred on "
            "its own) or drop those cells."
        )
    codes, names = pd.factorize(col.astype(str).to_numpy())
    return codes.astype(np.int64), pd.Index(names)


def select_genes(
    adata: AnnData,
    n_top_genes: int,
    *,
    is_counts: bool,
    layer: str | None = None,
    batch_key: str | None = None,
) -> pd.Index:
    """The ``n_top_genes`` most variable genes of a reference, in its gene order (scanpy).

    Counts are normalised to the median library size and ``log1p``-transformed on a copy, then
    :func:`scanpy.pp.highly_variable_genes` (``flavor="seurat"``, per section with ``batch_key``) ranks
    the genes.

    Parameters
    ----------
    adata
        Reference cells.
    n_top_genes
        Genes to keep.
    is_counts
        Whether the expression holds raw counts.
    layer
        Layer holding expression (``None``: ``X``).
    batch_key
        ``obs`` column of the reference's sections.

    Returns
    -------
    The selected gene names.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> X = np.random.default_rng(0).poisson(2, size=(100, 30)).astype(np.float32)
    >>> len(select_genes(ad.AnnData(X), 10, is_counts=True))
    10
    """
    import scanpy as sc

    X = adata.layers[layer] if layer is not None else adata.X
    if hasattr(X, "to_memory"):
        X = X.to_memory()
    tmp = AnnData(X.astype(np.float32) if sparse.issparse(X) else np.array(X, dtype=np.float32))
    tmp.var_names = adata.var_names.copy()
    if batch_key is not None and batch_key in adata.obs:
        tmp.obs["batch"] = adata.obs[batch_key].astype(str).to_numpy()
    if is_counts:
        sc.pp.normalize_total(tmp)
        sc.pp.log1p(tmp)
    sc.pp.highly_variable_genes(
        tmp, n_top_genes=int(n_top_genes), flavor="seurat", batch_key="batch" if "batch" in tmp.obs else None
    )
    genes = adata.var_names[tmp.var["highly_variable"].to_numpy()]
    logger.info("Selected the %d most variable of the reference's %d genes.", len(genes), adata.n_vars)
    return genes


class ExpressionView:
    """An AnnData's expression seen through a fitted :class:`Preprocessor`, read block by block.

    Genes are matched to the model's by name (:func:`~spatialedm._genes.match_genes`); missing genes are
    zero after centring, i.e. at the reference mean. Each batch is centred on its own mean, computed here
    in chunks.

    Parameters
    ----------
    adata
        Cells to read (raw counts or log-normalised; dense, sparse or backed).
    preprocessor
        The fitted preprocessor (its ``scale`` may still be ``None`` while it is being fitted).
    layer
        Layer holding expression; ``None`` (or a layer the AnnData lacks) reads ``X``.
    batch_key
        ``obs`` column of batches centred separately; one batch when ``None`` or absent.
    what
        How the AnnData is named in messages.
    """

    def __init__(
        self,
        adata: AnnData,
        preprocessor: Preprocessor,
        layer: str | None = None,
        batch_key: str | None = None,
        what: str = "query",
    ):
        if not isinstance(adata, AnnData):
            raise TypeError(f"The {what} must be an AnnData, got {type(adata).__name__}.")
        if adata.n_obs == 0:
            raise ValueError(f"The {what} AnnData has no cells (n_obs == 0).")
        if layer is not None and layer not in adata.layers:
            logger.info("Layer %r is not in the %s; reading adata.X.", layer, what)
            layer = None
        self.X = adata.layers[layer] if layer is not None else adata.X
        self.preprocessor = preprocessor
        self.match = match_genes(adata.var_names, preprocessor.genes, what=what)
        self.n_obs = adata.n_obs
        self.n_genes = len(preprocessor.genes)
        self.batch_codes, self.batch_names = batch_codes(adata.obs, batch_key, what=what)
        sample = dense_rows(self.X, np.arange(min(self.n_obs, 2000)), self.match.columns)
        if not np.isfinite(sample).all():
            raise ValueError(f"The {what}'s expression contains NaN or infinite values.")
        self.is_counts = preprocessor.is_counts and looks_like_counts(sample)
        if preprocessor.is_counts and not self.is_counts:
            logger.info(
                "The reference expression is counts; the %s looks log-normalised: used as it is.", what
            )
        self.means = self._batch_means()

    def _lognorm(self, idx: np.ndarray) -> np.ndarray:
        block = dense_rows(self.X, idx, self.match.columns)
        if not np.isfinite(block).all():
            raise ValueError("Expression contains NaN or infinite values.")
        if self.is_counts:
            block = log_normalize(block, self.preprocessor.target_sum)
        return block

    def _chunks(self):
        for start in range(0, self.n_obs, CHUNK_SIZE):
            yield np.arange(start, min(start + CHUNK_SIZE, self.n_obs))

    def _batch_means(self) -> np.ndarray:
        n_batch = len(self.batch_names)
        sums = np.zeros((n_batch, int(self.match.shared.sum())), dtype=np.float64)
        counts = np.bincount(self.batch_codes, minlength=n_batch).astype(np.float64)
        for idx in self._chunks():
            np.add.at(sums, self.batch_codes[idx], self._lognorm(idx))
        return (sums / counts[:, None]).astype(np.float32)

    def centred_rows(self, idx: np.ndarray) -> np.ndarray:
        """Log-normalised, batch-centred expression of the shared genes for cells ``idx`` (unscaled)."""
        idx = np.asarray(idx)
        block = self._lognorm(idx)
        block -= self.means[self.batch_codes[idx]]
        return block

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Model input for cells ``idx``: ``(len(idx), n_genes)`` float32, missing genes zero."""
        if self.preprocessor.scale is None:
            raise RuntimeError("The preprocessor has not been fitted.")
        block = self.centred_rows(idx)
        block /= self.preprocessor.scale[self.match.shared]
        out = np.zeros((len(block), self.n_genes), dtype=np.float32)
        out[:, self.match.shared] = block
        return out

    def all_rows(self) -> np.ndarray:
        """Model input for every cell, ``(n_obs, n_genes)``."""
        return np.concatenate([self.rows(idx) for idx in self._chunks()])


def reads_components(n_genes: int, n_pcs: int | None) -> bool:
    """Whether a model with ``n_genes`` genes reads ``n_pcs`` principal components instead of the genes.

    Examples
    --------
    >>> reads_components(3000, 50), reads_components(33, 50), reads_components(3000, None)
    (True, False, False)
    """
    return n_pcs is not None and n_genes > n_pcs


def principal_axes(view: ExpressionView, n_pcs: int, *, max_cells: int = 50_000, seed: int = 0) -> np.ndarray:
    """The reference's ``n_pcs`` leading principal axes of the model input (scikit-learn PCA).

    Parameters
    ----------
    view
        The reference seen through the fitted preprocessor.
    n_pcs
        Number of axes.
    max_cells
        Larger references are subsampled (at random, with ``seed``) to this many cells for the fit.
    seed
        Seed of the subsample and of the randomised solver.

    Returns
    -------
    ``(n_genes, n_pcs)`` float32 matrix with orthonormal columns; the model input times it gives the
    principal components (the input is already centred per section).

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> X = np.random.default_rng(0).poisson(3, size=(60, 12)).astype(np.float32)
    >>> prep = Preprocessor.fit(ad.AnnData(X), is_counts=True)
    >>> principal_axes(prep.view(ad.AnnData(X)), 5).shape
    (12, 5)
    """
    from sklearn.decomposition import PCA

    idx = np.arange(view.n_obs)
    if view.n_obs > max_cells:
        idx = np.sort(np.random.default_rng(seed).choice(view.n_obs, max_cells, replace=False))
    X = view.rows(idx)
    n_fit = int(min(n_pcs, *X.shape))
    pca = PCA(n_components=n_fit, random_state=seed).fit(X)
    logger.info(
        "Encoder input: %d principal components of %d genes (%.0f%% of the reference's variance).",
        n_fit,
        X.shape[1],
        100 * pca.explained_variance_ratio_.sum(),
    )
    axes = np.zeros((X.shape[1], n_pcs), dtype=np.float32)  # a tiny reference fills fewer axes
    axes[:, :n_fit] = pca.components_.T
    return axes


@dataclass
class Preprocessor:
    """Library-size normalisation, ``log1p``, per-batch gene centring and per-gene scaling.

    Parameters
    ----------
    genes
        The model's genes, in model order.
    is_counts
        Whether the reference expression holds raw counts (normalised here) or log-normalised values
        (used as they are).
    target_sum
        Library size counts are normalised to: the reference's median library size, set by :meth:`fit`.
    scale
        Per-gene standard deviation of the centred reference, set by :meth:`fit`.
    per_gene
        Scale each gene by its own spread; otherwise all genes by their root-mean-square spread, which
        keeps the relative variance of the genes (as a PCA of log-expression does).

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> X = np.random.default_rng(0).poisson(3, size=(50, 4)).astype(np.float32)
    >>> prep = Preprocessor.fit(ad.AnnData(X), is_counts=True)
    >>> prep.transform(ad.AnnData(X)).shape
    (50, 4)
    """

    genes: list[str]
    is_counts: bool
    target_sum: float | None = None
    scale: np.ndarray | None = field(default=None, repr=False)
    per_gene: bool = True

    @classmethod
    def fit(
        cls,
        adata: AnnData,
        *,
        is_counts: bool,
        layer: str | None = None,
        batch_key: str | None = None,
        per_gene: bool | None = True,
        n_top_genes: int | None = None,
        n_pcs: int | None = None,
    ) -> Preprocessor:
        """Fit the normalisation target and the gene spreads on a reference AnnData.

        Parameters
        ----------
        adata
            Reference cells; every gene of ``adata.var_names`` becomes a model gene (unless
            ``n_top_genes`` selects fewer).
        is_counts
            Whether the expression holds raw counts.
        layer
            Layer holding expression (``None``: ``X``).
        batch_key
            ``obs`` column of the reference's sections, each centred on its own.
        per_gene
            See the class parameters; ``None`` scales per gene unless more than ``n_pcs`` genes remain
            (then the model reads principal components, see :func:`principal_axes`, and one global
            spread keeps the genes' relative variance).
        n_top_genes
            Keep only this many highly variable genes when the reference has more (:func:`select_genes`).
        n_pcs
            Number of principal components the model reads (only resolves ``per_gene=None``).

        Returns
        -------
        The fitted preprocessor.
        """
        if n_top_genes is not None and adata.n_vars > n_top_genes:
            adata = adata[
                :, select_genes(adata, n_top_genes, is_counts=is_counts, layer=layer, batch_key=batch_key)
            ]
        if per_gene is None:
            per_gene = not reads_components(adata.n_vars, n_pcs)
        X = adata.layers[layer] if layer is not None else adata.X
        target = None
        if is_counts:
            totals = np.zeros(adata.n_obs)
            for start in range(0, adata.n_obs, CHUNK_SIZE):
                idx = np.arange(start, min(start + CHUNK_SIZE, adata.n_obs))
                totals[idx] = dense_rows(X, idx).sum(1)
            target = float(np.median(totals[totals > 0])) if (totals > 0).any() else 1.0
            if (totals == 0).any():
                logger.warning(
                    "%d reference cells have no counts on the model's %d genes; they are read as their section's "
                    "mean expression.",
                    int((totals == 0).sum()),
                    adata.n_vars,
                )
        prep = cls(
            genes=list(map(str, adata.var_names)), is_counts=is_counts, target_sum=target, per_gene=per_gene
        )
        view = ExpressionView(adata, prep, layer=layer, batch_key=batch_key, what="reference")
        sq = np.zeros(view.n_genes, dtype=np.float64)
        for idx in view._chunks():
            sq += (view.centred_rows(idx).astype(np.float64) ** 2).sum(0)
        std = np.sqrt(sq / adata.n_obs)
        if not per_gene:
            std = np.full_like(std, np.sqrt((std**2).mean()))
        prep.scale = np.maximum(std, _MIN_SCALE).astype(np.float32)
        logger.info(
            "Preprocessing: %s, %d genes%s.",
            "counts" if is_counts else "log-normalised values",
            len(prep.genes),
            f", normalised to the reference's median library size {target:g}" if target else "",
        )
        return prep

    @classmethod
    def fit_registered(cls, adata: AnnData, setup: dict, config) -> Preprocessor:
        """Fit on a reference registered with ``setup_anndata``.

        ``setup`` holds its ``setup_args``: layer, batch key and the declared ``expression`` kind
        (``"auto"`` detects counts); ``config`` is the model's :class:`~spatialedm.ModelConfig`
        (``scale_genes``, ``n_top_genes``, ``n_pcs``).
        """
        layer, declared = setup.get("layer"), setup.get("expression", "auto")
        X = adata.layers[layer] if layer is not None else adata.X
        is_counts = looks_like_counts(X) if declared == "auto" else declared == "counts"
        return cls.fit(
            adata,
            is_counts=is_counts,
            layer=layer,
            batch_key=setup.get("batch_key"),
            per_gene=config.scale_genes,
            n_top_genes=config.n_top_genes,
            n_pcs=config.n_pcs,
        )

    def view(
        self, adata: AnnData, layer: str | None = None, batch_key: str | None = None, what: str = "query"
    ) -> ExpressionView:
        """The AnnData seen through this preprocessor (see :class:`ExpressionView`)."""
        return ExpressionView(adata, self, layer=layer, batch_key=batch_key, what=what)

    def transform(
        self, adata: AnnData, layer: str | None = None, batch_key: str | None = None, what: str = "query"
    ) -> np.ndarray:
        """Model input for every cell of ``adata``: ``(n_obs, n_genes)`` float32."""
        return self.view(adata, layer=layer, batch_key=batch_key, what=what).all_rows()

    def to_dict(self) -> dict:
        """A JSON-serialisable description, saved with the model."""
        return {
            "genes": list(self.genes),
            "is_counts": bool(self.is_counts),
            "target_sum": None if self.target_sum is None else float(self.target_sum),
            "scale": None if self.scale is None else [float(s) for s in self.scale],
            "per_gene": bool(self.per_gene),
        }

    @classmethod
    def from_dict(cls, state: dict) -> Preprocessor:
        """Rebuild a preprocessor from :meth:`to_dict`."""
        scale = None if state.get("scale") is None else np.asarray(state["scale"], dtype=np.float32)
        return cls(
            genes=list(state["genes"]),
            is_counts=bool(state["is_counts"]),
            target_sum=state.get("target_sum"),
            scale=scale,
            per_gene=bool(state.get("per_gene", True)),
        )
