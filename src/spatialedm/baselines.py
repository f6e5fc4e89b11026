"""Reference baselines that any learned layout model has to beat.

Five layouts of a query, from least to most information used:

- :func:`random_layout` — Gaussian noise, the floor of every metric;
- :func:`expression_pca` — the query's own expression, first principal components (no reference);
- :func:`nearest_neighbor` — each query cell copies the position of its nearest reference cell in a
  shared expression PCA space;
- :func:`knn_regression` — distance-weighted k-nearest-neighbour regression of reference coordinates
  in that space (per reference section, then aligned; see its docstring);
- :func:`optimal_transport` — fused Gromov–Wasserstein transport of the query onto the reference
  locations (as novoSpaRc does), which also uses the query's own expression neighbourhoods and the
  reference's spatial neighbourhoods.

All return a plain ``(n_query, d)`` array; compare them with :mod:`spatialedm.metrics`, whose scores
ignore rotation, reflection, translation and global scale.

The baselines are meant to be honest, i.e. as strong as simple methods get without peeking:

- expression goes through the package's one :class:`~spatialedm._preprocessing.Preprocessor` fitted on
  the reference (genes matched by name; counts library-size normalised to the reference's median library
  size and ``log1p``-transformed, as :func:`scanpy.pp.normalize_total` and :func:`scanpy.pp.log1p` do;
  every section and the query centred on their own means), and the PCA is fitted on the reference;
- free parameters (number of neighbours, number of principal components) are chosen on the reference
  alone, by predicting spatially held-out parts of it (whole sections, or halves and contiguous blocks
  of a single section) and scoring them with :func:`~spatialedm.metrics.cellwise_spearman`. The query's
  coordinates are never read, and its expression never enters the choice;
- the constants of :func:`optimal_transport` (entropic regularisation, weight of the structure term)
  are fixed defaults, chosen once on the benchmark tasks and stated in its docstring.
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy.sparse.csgraph import shortest_path
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA
from sklearn.neighbors import kneighbors_graph

# The kNN regression is product code (the placement's prior="knn" runs it); the baselines re-export it as
# the benchmark's yardstick and build 1-NN and optimal transport on its expression space and selection.
from ._knn import COMPS_GRID as COMPS_GRID
from ._knn import CV_MAX_CELLS as CV_MAX_CELLS
from ._knn import DEFAULT_COMPS as DEFAULT_COMPS
from ._knn import DEFAULT_NEIGHBORS as DEFAULT_NEIGHBORS
from ._knn import K_GRID as K_GRID
from ._knn import N_BLOCKS as N_BLOCKS
from ._knn import (
    _batches,
    _cap_comps,
    _combine,
    _expression_space,
    _get_X,
    _regress,
    _select,
    knn_regression,
)
from ._preprocessing import Preprocessor, looks_like_counts

__all__ = ["expression_pca", "knn_regression", "nearest_neighbor", "optimal_transport", "random_layout"]

#: Neighbours of the k-NN graphs whose shortest paths are :func:`optimal_transport`'s structure costs.
OT_GRAPH_NEIGHBORS = 5
#: Query cells transported at a time by :func:`optimal_transport`.
OT_MAX_CELLS = 2000


def nearest_neighbor(
    reference: AnnData,
    query: AnnData,
    *,
    spatial_key: str = "spatial",
    layer: str | None = None,
    batch_key: str | None = None,
    query_batch_key: str | None = None,
    n_comps: int | None = None,
    scale_genes: bool = False,
    seed: int = 0,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Place each query cell at the position of its nearest reference cell in expression PCA space.

    The expression space is the one of :func:`knn_regression` (reference-fitted preprocessing and PCA);
    with ``n_comps=None`` the number of components is chosen on the reference alone as there, with one
    neighbour. The layout copies real reference positions (each section's coordinates centred and scaled
    to unit RMS): it has the reference's cell spacing, but many query cells share one position and some
    reference positions are never used. With several sections, the per-section copies are aligned and
    averaged as in :func:`knn_regression`, so the result is no longer made of reference positions.

    Parameters
    ----------
    reference
        AnnData with coordinates in ``obsm[spatial_key]``.
    query
        AnnData to place; its ``obsm`` is never read.
    spatial_key, layer, batch_key, query_batch_key, scale_genes, seed, return_params
        As in :func:`knn_regression`.
    n_comps
        Number of principal components; ``None``: chosen on the reference.

    Returns
    -------
    Array of shape ``(query.n_obs, d)``; with ``return_params``, ``(layout, params)`` as in
    :func:`knn_regression` (``n_neighbors`` is 1).

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> rng = np.random.default_rng(0)
    >>> ref = ad.AnnData(rng.poisson(2, size=(200, 20)).astype(np.float32))
    >>> ref.obsm["spatial"] = rng.normal(size=(200, 2))
    >>> layout = nearest_neighbor(ref, ref[:50].copy(), n_comps=10)
    >>> layout.shape
    (50, 2)
    """
    space = _expression_space(
        reference,
        query,
        spatial_key=spatial_key,
        layer=layer,
        batch_key=batch_key,
        query_batch_key=query_batch_key,
        scale_genes=scale_genes,
        what="nearest_neighbor",
    )
    cv_score = None
    if n_comps is None:
        _, n_comps, cv_score = _select(space, [1], None, seed, "nearest_neighbor")
    n_comps = _cap_comps(n_comps, space.Z_ref.shape[1], reference.n_obs)
    layout = _regress(space, 1, n_comps)
    if return_params:
        return layout, {"n_neighbors": 1, "n_comps": n_comps, "cv_score": cv_score}
    return layout


def _graph_distances(x: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Shortest-path distances on the symmetrised k-NN graph of ``x``, scaled to max 1.

    Pairs in different connected components get the largest finite distance.
    """
    k = int(min(n_neighbors, len(x) - 1))
    graph = kneighbors_graph(x, n_neighbors=k, mode="distance")
    graph = graph.maximum(graph.T)
    dist = shortest_path(graph, method="D", directed=False)
    finite = np.isfinite(dist)
    top = dist[finite].max() if finite.any() else 1.0
    dist[~finite] = top
    return dist / max(top, 1e-12)


def optimal_transport(
    reference: AnnData,
    query: AnnData,
    *,
    spatial_key: str = "spatial",
    layer: str | None = None,
    batch_key: str | None = None,
    query_batch_key: str | None = None,
    alpha: float = 0.5,
    epsilon: float = 0.01,
    n_comps: int | None = None,
    max_locations: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """Place the query by fused Gromov–Wasserstein transport onto the reference locations (novoSpaRc-like).

    A transport plan between query cells and reference cells (the locations) minimises
    ``(1 - alpha) <M, T> + alpha GW(C_query, C_ref, T)`` under uniform marginals (POT's
    :func:`ot.gromov.fused_gromov_wasserstein`, or :func:`ot.gromov.entropic_fused_gromov_wasserstein`
    when ``epsilon > 0``), where

    - ``M`` is the squared Euclidean distance between query and reference cells in the reference PCA space
      of :func:`knn_regression` (reference-fitted preprocessing), scaled to max 1;
    - ``C_ref`` are shortest-path distances on the :data:`OT_GRAPH_NEIGHBORS`-nearest-neighbour graph of
      the reference coordinates and ``C_query`` those on the graph of the query's expression PCA, both
      scaled to max 1 (novoSpaRc's structure costs).

    Each query cell's position is the transport-weighted mean of the locations (barycentric projection),
    so it lies inside their convex hull. Each reference section is used separately (its coordinates
    centred and scaled to unit RMS, subsampled to ``max_locations`` with a generator seeded by ``seed``)
    and the per-section layouts are combined as in :func:`knn_regression`. A query of more than
    :data:`OT_MAX_CELLS` cells is transported in random chunks (seeded) of at most that size, each onto
    the same locations, so the chunks share one frame.

    The constants ``epsilon`` and ``alpha`` are fixed defaults chosen on the package's benchmark tasks
    (``alpha=0.5`` is novoSpaRc's value for a reference atlas); smaller ``epsilon`` makes the plan
    closer to a permutation and the layout noisier, and the unregularised problem (``epsilon=0``) is
    much worse. Each chunk and section solves a problem of up to ``2,000 × 2,000``: from tens of seconds
    to minutes on one thread.

    Parameters
    ----------
    reference
        AnnData with coordinates in ``obsm[spatial_key]``.
    query
        AnnData to place; its ``obsm`` is never read.
    spatial_key, layer, batch_key, query_batch_key
        As in :func:`knn_regression`.
    alpha
        Weight of the structure (Gromov–Wasserstein) term against the expression cost, in ``[0, 1]``.
    epsilon
        Entropic regularisation; ``0`` solves the unregularised problem (conditional gradient).
    n_comps
        Number of principal components; ``None``: the number :func:`knn_regression` chooses on the
        reference.
    max_locations
        Largest number of locations per reference section.
    seed
        Seed of the subsampling, the query chunks and the parameter selection.

    Returns
    -------
    Array of shape ``(query.n_obs, d)`` in the frame of the first reference section (unit RMS).

    Raises
    ------
    ImportError
        When POT is not installed.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> rng = np.random.default_rng(0)
    >>> ref = ad.AnnData(rng.poisson(2, size=(200, 20)).astype(np.float32))
    >>> ref.obsm["spatial"] = rng.normal(size=(200, 2))
    >>> optimal_transport(ref, ref[:50].copy(), n_comps=10).shape
    (50, 2)
    """
    try:
        import ot
    except ImportError as err:
        raise ImportError("optimal_transport needs POT (Python Optimal Transport): pip install pot") from err
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}.")
    space = _expression_space(
        reference,
        query,
        spatial_key=spatial_key,
        layer=layer,
        batch_key=batch_key,
        query_batch_key=query_batch_key,
        scale_genes=False,
        what="optimal_transport",
    )
    if n_comps is None:
        _, n_comps, _ = _select(space, None, None, seed, "optimal_transport (n_comps of the k-NN selection)")
    n_comps = _cap_comps(n_comps, space.Z_ref.shape[1], reference.n_obs)
    pca = PCA(n_components=n_comps, random_state=0).fit(space.Z_ref)
    P_ref = pca.transform(space.Z_ref).astype(np.float64)
    P_query = pca.transform(space.Z_query).astype(np.float64)

    rng = np.random.default_rng(seed)
    n = query.n_obs
    n_chunks = int(np.ceil(n / OT_MAX_CELLS))
    chunks = [np.arange(n)] if n_chunks == 1 else np.array_split(rng.permutation(n), n_chunks)
    C_query = [_graph_distances(P_query[c], OT_GRAPH_NEIGHBORS) for c in chunks]

    preds = []
    for idx, y in zip(space.groups, space.targets):
        if len(idx) > max_locations:
            keep = np.sort(rng.choice(len(idx), size=max_locations, replace=False))
            idx, y = idx[keep], y[keep]
        C_ref = _graph_distances(y, OT_GRAPH_NEIGHBORS)
        out = np.empty((n, y.shape[1]))
        for chunk, C_q in zip(chunks, C_query):
            M = cdist(P_query[chunk], P_ref[idx], metric="sqeuclidean")
            M /= max(M.max(), 1e-12)
            p, q = ot.unif(len(chunk)), ot.unif(len(idx))
            if epsilon > 0:
                T = ot.gromov.entropic_fused_gromov_wasserstein(
                    M, C_q, C_ref, p, q, loss_fun="square_loss", epsilon=epsilon, alpha=alpha
                )
            else:
                T = ot.gromov.fused_gromov_wasserstein(
                    M, C_q, C_ref, p, q, loss_fun="square_loss", alpha=alpha
                )
            T = np.asarray(T, dtype=np.float64)
            mass = T.sum(axis=1, keepdims=True)
            out[chunk] = (T @ y) / np.maximum(mass, 1e-300)
        preds.append(out)
    return _combine(preds)


def expression_pca(
    query: AnnData,
    *,
    dim: int = 2,
    layer: str | None = None,
    batch_key: str | None = None,
    scale_genes: bool = False,
) -> np.ndarray:
    """Lay the query out by the first principal components of its own expression (no reference).

    Expression goes through a :class:`~spatialedm._preprocessing.Preprocessor` fitted on the query
    itself: counts are library-size normalised and ``log1p``-transformed, each batch is centred on its
    own mean (and every gene scaled to unit variance when ``scale_genes``).

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
    _batches(query, batch_key)
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
