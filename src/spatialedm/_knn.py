"""The kNN regression of reference coordinates that ``prior="knn"`` uses, and its choice of parameters.

Each query cell is placed at the inverse-distance-weighted mean position of its nearest reference cells in
a reference-fitted expression PCA, per reference section, and the per-section layouts are aligned and
averaged (:func:`knn_regression`). The number of neighbours and of principal components are chosen on the
reference alone, by predicting spatially held-out parts of it (:func:`_select`).

This is product code: the placement's ``prior="knn"`` (``_prior.py``) runs it, and
:mod:`spatialedm.baselines` re-exports :func:`knn_regression` as the benchmark's yardstick and builds its
other reference baselines (1-NN, optimal transport) on the same expression space and selection.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsRegressor, NearestNeighbors

from ._genes import match_genes
from ._preprocessing import Preprocessor, looks_like_counts
from .geometry import fit_similarity, unit_rms
from .metrics import cellwise_spearman

logger = logging.getLogger(__name__)

#: Candidate numbers of neighbours of :func:`knn_regression`'s selection (capped by the section size).
K_GRID = (5, 10, 20, 50)
#: Candidate numbers of principal components (capped by genes and cells; the gene count is added when
#: it is below the largest candidate).
COMPS_GRID = (10, 20, 30, 50)
#: The plain recipe's settings, preferred by the selection unless a candidate beats them clearly.
DEFAULT_NEIGHBORS, DEFAULT_COMPS = 10, 50
#: Contiguous spatial blocks a single reference section is cut into for the selection.
N_BLOCKS = 4
#: Cells per held-out part scored by :func:`~spatialedm.metrics.cellwise_spearman` in the selection.
CV_MAX_CELLS = 1000


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


def _combine(preds: list[np.ndarray]) -> np.ndarray:
    """One layout from per-section layouts of the same cells (two passes of generalised Procrustes).

    Each layout is aligned onto the first, the aligned layouts are averaged, re-aligned onto that
    average and averaged again.
    """
    if len(preds) == 1:
        return preds[0]
    aligned = [preds[0]] + [_procrustes_align(p, preds[0]) for p in preds[1:]]
    mean = np.mean(aligned, axis=0)
    aligned = [_procrustes_align(p, mean) for p in aligned]
    return np.mean(aligned, axis=0)


class _Space(NamedTuple):
    """Reference and query expression in the model's input space, and the reference's sections."""

    Z_ref: np.ndarray
    Z_query: np.ndarray
    groups: list[np.ndarray]
    coords: np.ndarray
    targets: list[np.ndarray]


def _expression_space(
    reference: AnnData,
    query: AnnData,
    *,
    spatial_key: str,
    layer: str | None,
    batch_key: str | None,
    query_batch_key: str | None,
    scale_genes: bool,
    what: str,
) -> _Space:
    """Preprocess both AnnData with a :class:`Preprocessor` fitted on the reference's shared genes."""
    if spatial_key not in reference.obsm:
        raise KeyError(f"spatial_key {spatial_key!r} not found in reference.obsm.")
    shared = _shared_genes(reference, query)
    ref_batches = _batches(reference, batch_key)
    _batches(query, query_batch_key)
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
    logger.info("%s: %d shared genes, %d reference cells", what, len(shared), reference.n_obs)

    coords = np.asarray(reference.obsm[spatial_key], dtype=np.float64)
    if ref_batches is None:
        groups = [np.arange(reference.n_obs)]
    else:
        codes, _ = pd.factorize(ref_batches)
        groups = [np.flatnonzero(codes == b) for b in range(codes.max() + 1)]
    return _Space(Z_ref, Z_query, groups, coords, [unit_rms(coords[idx]) for idx in groups])


def _cap_comps(n_comps: int, n_genes: int, n_cells: int) -> int:
    return int(max(1, min(n_comps, n_genes, n_cells - 1)))


def _comps_grid(n_genes: int, n_cells: int) -> list[int]:
    grid = set(COMPS_GRID)
    if n_genes < max(COMPS_GRID):
        grid.add(n_genes)
    return sorted({_cap_comps(c, n_genes, n_cells) for c in grid})


def _distance_weighted(dist: np.ndarray, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inverse-distance-weighted mean of ``y[idx]`` per row, as ``KNeighborsRegressor`` computes it.

    A row with neighbours at distance 0 averages those neighbours alone, with equal weights.
    """
    with np.errstate(divide="ignore"):
        w = 1.0 / dist
    inf = np.isinf(w)
    rows = inf.any(axis=1)
    w[rows] = inf[rows]
    return np.einsum("nk,nkd->nd", w, y[idx]) / w.sum(axis=1, keepdims=True)


def _folds(space: _Space, seed: int) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """Spatially held-out parts of the reference: ``(training groups, held-out cells)`` per fold.

    Several sections: each section in turn is held out and the others train. One section: each half
    along each of its two principal axes (cut at the median) is held out and predicted from the other
    half, and each of :data:`N_BLOCKS` contiguous blocks (k-means on the coordinates, seeded) from the
    rest.
    """
    if len(space.groups) > 1:
        return [
            ([g for j, g in enumerate(space.groups) if j != i], test) for i, test in enumerate(space.groups)
        ]
    idx = space.groups[0]
    if len(idx) < 40:
        raise ValueError(
            f"Choosing parameters needs at least 40 reference cells, got {len(idx)}; pass them explicitly."
        )
    xy = unit_rms(space.coords[idx])
    folds = []
    for axis in np.linalg.svd(xy, full_matrices=False)[2][:2]:
        proj = xy @ axis
        low = proj <= np.median(proj)
        folds += [([idx[~low]], idx[low]), ([idx[low]], idx[~low])]
    labels = KMeans(n_clusters=N_BLOCKS, n_init=10, random_state=seed).fit_predict(xy)
    return folds + [([idx[labels != b]], idx[labels == b]) for b in range(N_BLOCKS)]


def _one_se_choice(scores: np.ndarray, default: tuple[int, int]) -> tuple[tuple[int, int], float]:
    """Index of the chosen candidate from ``(folds, ks, comps)`` scores, and the best one's standard error.

    The ``default`` candidate is kept unless the best mean exceeds its mean by more than one standard
    error of the best candidate's fold scores.

    Examples
    --------
    >>> s = np.array([[[0.50, 0.40]], [[0.40, 0.44]]])  # 2 folds, 1 k, 2 comps: means 0.45 and 0.42
    >>> _one_se_choice(s, (0, 1))[0]  # 0.42 is within one standard error (0.05) of 0.45
    (0, 1)
    """
    mean = scores.mean(axis=0)
    best = np.unravel_index(np.argmax(mean), mean.shape)
    n = scores.shape[0]
    se = float(scores[(slice(None), *best)].std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    choice = default if mean[default] >= mean[best] - se else best
    return (int(choice[0]), int(choice[1])), se


def _select(
    space: _Space, ks: list[int] | None, comps: list[int] | None, seed: int, what: str
) -> tuple[int, int, float]:
    """Choose ``(n_neighbors, n_comps)`` on the reference alone by spatially held-out prediction.

    Every fold is treated as a query: its cells are centred on their own mean, each training group on
    its own mean, a PCA is fitted on the training cells, and the held-out cells are predicted per
    training group and combined as in :func:`knn_regression`. The score is the mean over folds of
    :func:`~spatialedm.metrics.cellwise_spearman` against the held-out cells' true coordinates. The
    plain recipe (:data:`DEFAULT_NEIGHBORS` neighbours, or the one candidate of ``ks``, and
    :data:`DEFAULT_COMPS` components, capped; the largest candidate when ``comps`` lacks it) is kept unless the best candidate's mean exceeds its mean by more than one
    standard error of the best candidate's fold scores (the one-standard-error rule); a few held-out parts
    rank close candidates by chance. Among the rest, ties go to the first candidate (fewest neighbours,
    then fewest components).
    """
    folds = _folds(space, seed)
    n_genes = space.Z_ref.shape[1]
    min_train = min(sum(len(g) for g in train) for train, _ in folds)
    min_group = min(len(g) for train, _ in folds for g in train)
    comps = _comps_grid(n_genes, min_train) if comps is None else comps
    comps = sorted({_cap_comps(c, n_genes, min_train) for c in comps})
    ks = sorted({min(k, min_group) for k in (K_GRID if ks is None else ks)})
    scores = np.zeros((len(folds), len(ks), len(comps)))
    for f, (train, test) in enumerate(folds):
        Z_test = space.Z_ref[test] - space.Z_ref[test].mean(axis=0)
        Z_train = [space.Z_ref[g] - space.Z_ref[g].mean(axis=0) for g in train]
        pca = PCA(n_components=max(comps), random_state=0).fit(np.concatenate(Z_train))
        P_test = pca.transform(Z_test)
        P_train = [pca.transform(z) for z in Z_train]
        Y_train = [unit_rms(space.coords[g]) for g in train]
        for j, c in enumerate(comps):
            searches = [
                NearestNeighbors(n_neighbors=max(ks)).fit(p[:, :c]).kneighbors(P_test[:, :c]) for p in P_train
            ]
            for i, k in enumerate(ks):
                preds = [_distance_weighted(d[:, :k], n[:, :k], y) for (d, n), y in zip(searches, Y_train)]
                scores[f, i, j] = cellwise_spearman(
                    _combine(preds), space.coords[test], max_cells=CV_MAX_CELLS, seed=seed
                )
    mean = scores.mean(axis=0)
    i0 = ks.index(min(DEFAULT_NEIGHBORS, min_group)) if len(ks) > 1 else 0
    plain_comps = _cap_comps(DEFAULT_COMPS, n_genes, min_train)
    j0 = comps.index(plain_comps) if plain_comps in comps else len(comps) - 1
    (i, j), se = _one_se_choice(scores, (i0, j0))
    logger.info(
        "%s: chose n_neighbors=%d, n_comps=%d (held-out cellwise Spearman %.3f, mean of %d %s; best "
        "candidate %.3f ± %.3f; grid n_neighbors=%s, n_comps=%s)",
        what,
        ks[i],
        comps[j],
        mean[i, j],
        len(folds),
        "held-out sections" if len(space.groups) > 1 else "held-out halves and blocks",
        mean.max(),
        se,
        ks,
        comps,
    )
    return ks[i], comps[j], float(mean[i, j])


def _regress(space: _Space, n_neighbors: int, n_comps: int) -> np.ndarray:
    """Fit the reference PCA and predict the query per section by k-NN regression, then combine."""
    pca = PCA(n_components=n_comps, random_state=0).fit(space.Z_ref)
    P_ref = pca.transform(space.Z_ref)
    P_query = pca.transform(space.Z_query)
    preds = []
    for idx, y in zip(space.groups, space.targets):
        reg = KNeighborsRegressor(n_neighbors=min(n_neighbors, len(idx)), weights="distance")
        preds.append(reg.fit(P_ref[idx], y).predict(P_query))
    return _combine(preds)


def knn_regression(
    reference: AnnData,
    query: AnnData,
    *,
    spatial_key: str = "spatial",
    layer: str | None = None,
    batch_key: str | None = None,
    query_batch_key: str | None = None,
    n_neighbors: int | None = None,
    n_comps: int | None = None,
    scale_genes: bool = False,
    seed: int = 0,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Predict the query's layout by k-nearest-neighbour regression of reference coordinates.

    Genes are matched by name (``var_names``); only shared genes are used, in the reference's order.
    Expression goes through a :class:`~spatialedm._preprocessing.Preprocessor` fitted on the reference:
    counts are library-size normalised to the reference's median library size and ``log1p``-transformed
    (other values are used as they are), each reference section is centred on its own mean and the query
    on its own batches (with ``scale_genes=True`` every gene is also divided by its reference spread). A
    PCA fitted on the reference gives the space in which each query cell's ``n_neighbors`` nearest
    reference cells are found; the prediction is their inverse-distance-weighted mean position
    (:class:`~sklearn.neighbors.KNeighborsRegressor` with ``weights="distance"``).

    Each reference section's coordinates are centred and scaled to unit RMS. Sections of one tissue lie in
    different frames (their own rotation, reflection and origin), so averaging coordinates across sections
    would mix unrelated frames. With several sections (``batch_key``), the query is therefore predicted
    from each section separately (neighbours searched within that section only); each per-section
    prediction is aligned onto the first one by Procrustes (translation + O(d) + global scale, the query
    cells themselves being the correspondences); the aligned predictions are averaged, re-aligned once
    onto that average (one step of generalised Procrustes analysis) and averaged again.

    Parameters left at ``None`` are chosen on the reference alone (never on the query): every
    combination of ``n_neighbors`` in :data:`K_GRID` (capped by the section size) and ``n_comps`` in
    :data:`COMPS_GRID` (capped by genes and cells; the gene count itself is a candidate when below 50)
    predicts spatially held-out parts of the reference exactly as it would a query (held-out cells centred
    on their own mean, PCA fitted on the training cells only): with several sections, each section in
    turn from the others; with one section, each half along either of the two principal axes of its
    coordinates from the other half, and each of :data:`N_BLOCKS` contiguous blocks (k-means on the
    coordinates, seeded) from the rest. The plain recipe (:data:`DEFAULT_NEIGHBORS` neighbours,
    :data:`DEFAULT_COMPS` components, capped) is used unless the combination with the best mean
    :func:`~spatialedm.metrics.cellwise_spearman` (on up to :data:`CV_MAX_CELLS` held-out cells per part)
    beats it by more than one standard error of its scores over the parts; then that one is used.
    Holding out halves as well as blocks of a single section mimics the harder case of a query from a
    region the reference does not cover; the choice among such designs was made on the package's
    benchmark tasks. On one section the selection is noisy (it can miss the query's best setting by a few
    hundredths); it is most useful with several sections. It scores 16 candidates on up to 8 held-out
    parts, which is almost all of the function's run time (seconds for a few thousand reference cells).

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
        Number of reference neighbours per query cell (capped at the section size); ``None``: chosen on
        the reference.
    n_comps
        Number of principal components (capped by the number of genes and reference cells); ``None``:
        chosen on the reference.
    scale_genes
        Whether to scale every gene to unit variance before the PCA. Off by default: scaling amplifies
        noisy, weakly expressed genes, and a PCA of log-expression keeps the genes' relative variance.
    seed
        Seed of the spatial blocks and of the scoring's cell subsample in the selection (the prediction
        itself is deterministic).
    return_params
        Also return the parameters used.

    Returns
    -------
    Array of shape ``(query.n_obs, d)``, ``d`` the reference's coordinate dimension, in the frame of the
    first reference section (unit RMS). With ``return_params``, the tuple ``(layout, params)`` with
    ``params = {"n_neighbors": k, "n_comps": c, "cv_score": s}``, ``s`` the held-out score of the chosen
    combination (``None`` when both parameters were given).

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> rng = np.random.default_rng(0)
    >>> ref = ad.AnnData(rng.poisson(2, size=(200, 20)).astype(np.float32))
    >>> ref.obsm["spatial"] = rng.normal(size=(200, 2))
    >>> query = ref[:50].copy()
    >>> knn_regression(ref, query, n_neighbors=10, n_comps=10).shape
    (50, 2)
    >>> layout, params = knn_regression(ref, query, return_params=True)
    >>> sorted(params)
    ['cv_score', 'n_comps', 'n_neighbors']
    """
    space = _expression_space(
        reference,
        query,
        spatial_key=spatial_key,
        layer=layer,
        batch_key=batch_key,
        query_batch_key=query_batch_key,
        scale_genes=scale_genes,
        what="knn_regression",
    )
    cv_score = None
    if n_neighbors is None or n_comps is None:
        n_neighbors, n_comps, cv_score = _select(
            space,
            None if n_neighbors is None else [n_neighbors],
            None if n_comps is None else [n_comps],
            seed,
            "knn_regression",
        )
    n_comps = _cap_comps(n_comps, space.Z_ref.shape[1], reference.n_obs)
    layout = _regress(space, int(n_neighbors), n_comps)
    if return_params:
        return layout, {"n_neighbors": int(n_neighbors), "n_comps": n_comps, "cv_score": cv_score}
    return layout
