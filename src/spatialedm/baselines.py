"""Reference baselines that any learned layout model has to beat.

Three layouts of a query, from least to most information used:

- :func:`random_layout` — Gaussian noise, the floor of every metric;
- :func:`expression_pca` — the query's own expression, first principal components (no reference);
- :func:`knn_regression` — distance-weighted k-nearest-neighbour regression of reference coordinates
  in a shared expression PCA space (per reference section, then aligned; see its docstring).

All return a plain ``(n_query, d)`` array; compare them with :mod:`spatialedm.metrics`, whose scores
ignore rotation, reflection, translation and global scale.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsRegressor

from ._genes import match_genes
from ._preprocessing import Preprocessor, looks_like_counts
from .geometry import fit_similarity, unit_rms

logger = logging.getLogger(__name__)

__all__ = ["expression_pca", "knn_regression", "random_layout"]


def _get_X(adata: AnnData, layer: str | None):
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in adata.layers (available: {list(adata.layers)}).")
    return adata.layers[layer]


def _batches(adata: AnnData, batch_key: str | None) -> np.ndarray | None:
    if batch_key is None:
        return None
    if batch_key not in adata.obs:
        raise KeyError(f"batch_key {batch_key!r} not found in adata.obs.")
    return np.asarray(adata.obs[batch_key].astype(str))


def _procrustes_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Align ``source`` onto ``target`` (same rows) with translation, O(d) and a global scale.

    Reflections are allowed because section frames may be mirror images of each other.
    """
    return fit_similarity(source, target).apply(source)


def _shared_genes(reference: AnnData, query: AnnData) -> pd.Index:
    m = match_genes(query.var_names, reference.var_names, what="query", warn=False)
    return reference.var_names[m.shared]


def knn_regression(
    reference: AnnData,
    query: AnnData,
    *,
    spatial_key: str = "spatial",
    layer: str | None = None,
    batch_key: str | None = None,
    query_batch_key: str | None = None,
    n_neighbors: int = 10,
    n_comps: int = 30,
    scale_genes: bool = False,
) -> np.ndarray:
    """Predict the query's layout by k-nearest-neighbour regression of reference coordinates.

    Genes are matched by name (``var_names``); only shared genes are used, in the reference's order.
    Expression is log-normalised (when it looks like counts) and centred per batch with
    :class:`~spatialedm._preprocessing.ExpressionScaler` fitted on the reference: each reference batch is
    centred on its own mean and the query is centred on its own batches (with ``scale_genes=True`` both are
    also divided by the reference's per-gene spread, as the model's input is). A PCA fitted on the reference gives the space in which each query cell's
    ``n_neighbors`` nearest reference cells are found; the prediction is their inverse-distance-weighted
    mean position.

    Each reference section's coordinates are centred and scaled to unit RMS. Sections of one tissue lie in
    different frames (their own rotation, reflection and origin), so averaging coordinates across sections
    would mix unrelated frames. With several sections (``batch_key``), the query is therefore predicted
    from each section separately (neighbours searched within that section only); each per-section
    prediction is aligned onto the first one by Procrustes (translation + O(d) + global scale, the query
    cells themselves being the correspondences); the aligned predictions are averaged, re-aligned once
    onto that average (one step of generalised Procrustes analysis) and averaged again.

    Parameters
    ----------
    reference
        AnnData with coordinates in ``obsm[spatial_key]``.
    query
        AnnData to place; its ``obsm`` is never read.
    spatial_key
        Key of the reference coordinates in ``reference.obsm``.
    layer
        Layer holding the expression in both objects (``None``: ``X``). Raw counts are detected
        automatically and log-normalised; anything else is used as is.
    batch_key
        Column of ``reference.obs`` naming sections (``None``: one section).
    query_batch_key
        Column of ``query.obs`` naming the query's batches, each centred on its own mean
        (``None``: the whole query is one batch).
    n_neighbors
        Number of reference neighbours per query cell (capped at the section size).
    n_comps
        Number of principal components (capped by the number of genes and reference cells).
    scale_genes
        Whether to scale every gene to unit variance before the PCA. Off by default: on the held-out
        sections of STARmap, DLPFC and MERFISH, unit-variance genes lowered cellwise Spearman by 0.00–0.04
        (scaling amplifies noisy, weakly expressed genes), so the unscaled PCA is the stronger baseline.

    Returns
    -------
    Array of shape ``(query.n_obs, d)``, ``d`` the reference's coordinate dimension, in the frame of the
    first reference section (unit RMS).

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> rng = np.random.default_rng(0)
    >>> ref = ad.AnnData(rng.poisson(2, size=(200, 20)).astype(np.float32))
    >>> ref.obsm["spatial"] = rng.normal(size=(200, 2))
    >>> query = ref[:50].copy()
    >>> knn_regression(ref, query).shape
    (50, 2)
    """
    if spatial_key not in reference.obsm:
        raise KeyError(f"spatial_key {spatial_key!r} not found in reference.obsm.")
    shared = _shared_genes(reference, query)
    logger.info("knn_regression: %d shared genes", len(shared))

    ref_sub = reference[:, shared]
    prep = Preprocessor.fit(
        ref_sub,
        is_counts=looks_like_counts(_get_X(ref_sub, layer)),
        layer=layer,
        batch_key=batch_key,
        per_gene=scale_genes,
    )
    Z_ref = prep.transform(ref_sub, layer=layer, batch_key=batch_key, what="reference")
    Z_query = prep.transform(query, layer=layer, batch_key=query_batch_key)

    n_comps = int(min(n_comps, Z_ref.shape[1], Z_ref.shape[0] - 1))
    pca = PCA(n_components=n_comps, random_state=0).fit(Z_ref)
    P_ref = pca.transform(Z_ref)
    P_query = pca.transform(Z_query)

    coords = np.asarray(reference.obsm[spatial_key], dtype=np.float64)
    ref_batches = _batches(reference, batch_key)
    if ref_batches is None:
        groups = [np.arange(reference.n_obs)]
    else:
        codes, _ = pd.factorize(ref_batches)
        groups = [np.flatnonzero(codes == b) for b in range(codes.max() + 1)]

    preds = []
    for idx in groups:
        k = min(n_neighbors, len(idx))
        reg = KNeighborsRegressor(n_neighbors=k, weights="distance")
        reg.fit(P_ref[idx], unit_rms(coords[idx]))
        preds.append(reg.predict(P_query))

    if len(preds) == 1:
        return preds[0]
    aligned = [preds[0]] + [_procrustes_align(p, preds[0]) for p in preds[1:]]
    mean = np.mean(aligned, axis=0)
    aligned = [_procrustes_align(p, mean) for p in aligned]
    return np.mean(aligned, axis=0)


def expression_pca(
    query: AnnData,
    *,
    dim: int = 2,
    layer: str | None = None,
    batch_key: str | None = None,
    scale_genes: bool = False,
) -> np.ndarray:
    """Lay the query out by the first principal components of its own expression (no reference).

    Expression is log-normalised when it looks like counts and centred per batch with an
    :class:`~spatialedm._preprocessing.ExpressionScaler` fitted on the query itself (and scaled per gene
    when ``scale_genes``).

    Parameters
    ----------
    query
        AnnData to place.
    dim
        Number of components, i.e. the layout's dimension.
    layer
        Layer holding the expression (``None``: ``X``).
    batch_key
        Column of ``query.obs`` naming batches, each centred on its own mean.
    scale_genes
        Whether to scale every gene to unit variance before the PCA.

    Returns
    -------
    Array of shape ``(query.n_obs, dim)``.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> X = np.random.default_rng(0).poisson(2, size=(100, 10)).astype(np.float32)
    >>> expression_pca(ad.AnnData(X), dim=2).shape
    (100, 2)
    """
    X = _get_X(query, layer)
    if dim > min(query.n_obs, query.n_vars):
        raise ValueError(f"dim={dim} exceeds min(n_obs, n_vars) = {min(query.n_obs, query.n_vars)}.")
    prep = Preprocessor.fit(
        query, is_counts=looks_like_counts(X), layer=layer, batch_key=batch_key, per_gene=scale_genes
    )
    Z = prep.transform(query, layer=layer, batch_key=batch_key, what="query")
    return PCA(n_components=dim, random_state=0).fit_transform(Z)


def random_layout(query: AnnData, *, dim: int = 2, seed: int = 0) -> np.ndarray:
    """Return a standard-normal random layout, the floor of every layout metric.

    Parameters
    ----------
    query
        AnnData to place (only ``n_obs`` is used).
    dim
        Layout dimension.
    seed
        Seed of the random generator.

    Returns
    -------
    Array of shape ``(query.n_obs, dim)``.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> random_layout(ad.AnnData(np.zeros((5, 3))), dim=3).shape
    (5, 3)
    """
    return np.random.default_rng(seed).standard_normal((query.n_obs, dim))
