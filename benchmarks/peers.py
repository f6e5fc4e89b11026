"""Peer methods for the core quality benchmark: Tangram, novoSpaRc and CeLEry.

Each function places the query cells of a task (see :func:`benchmarks.tasks.load_task`) from expression
alone and returns an ``(n_query, dim)`` array, to be scored like the baselines. The peers are not
dependencies of ``spatialedm``: each is imported inside its function, so this module imports without
them (install them with ``benchmarks/requirements-peers.txt``).

Shared conventions
------------------
- Genes are matched by name; only the genes shared by reference and query are used, in the reference's
  order.
- Expression (``info["layer"]``, ``None`` for ``X``) is log-normalised when it holds counts (scanpy's
  ``normalize_total`` to the median library size, then ``log1p``) and used as is otherwise, for
  reference and query alike.
- A reference with several sections (``info["batch_key"]`` not ``None``) is mapped one section at a
  time, because sections lie in unrelated coordinate frames; each peer sees the section's own
  coordinates, and the per-section layouts of the query are combined by generalised Procrustes
  analysis with two passes
  (:func:`spatialedm.geometry.generalised_procrustes` with ``n_iter=2``: align every layout onto the
  first, average, re-align onto the average, average), which is the combination used by
  ``knn_regression`` up to a similarity transform (to which every metric is invariant).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from spatialedm.geometry import generalised_procrustes

logger = logging.getLogger(__name__)

__all__ = ["PEERS", "celery_layout", "novosparc_layout", "tangram_layout"]


def _shared_genes(reference: AnnData, query: AnnData) -> pd.Index:
    shared = reference.var_names[reference.var_names.isin(query.var_names)]
    if len(shared) < 2:
        raise ValueError(f"reference and query share {len(shared)} genes; at least 2 are needed.")
    return shared


def _expression(adata: AnnData, genes: pd.Index, layer: str | None) -> np.ndarray:
    """Dense log-normalised expression of ``genes`` (normalised only when it holds counts)."""
    import scanpy as sc

    sub = adata[:, genes]
    X = sub.X if layer is None else sub.layers[layer]
    X = X.toarray() if sparse.issparse(X) else np.asarray(X)
    X = np.asarray(X, dtype=np.float32)
    if np.all(X >= 0) and np.allclose(X, np.round(X)):
        tmp = AnnData(X)
        sc.pp.normalize_total(tmp)
        sc.pp.log1p(tmp)
        X = np.asarray(tmp.X, dtype=np.float32)
    return X


def _sections(reference: AnnData, batch_key: str | None) -> list[np.ndarray]:
    """Row indices of each reference section (one group when ``batch_key`` is ``None``)."""
    if batch_key is None:
        return [np.arange(reference.n_obs)]
    codes, _ = pd.factorize(reference.obs[batch_key].astype(str).to_numpy())
    return [np.flatnonzero(codes == b) for b in range(codes.max() + 1)]


def _per_section(reference: AnnData, info: dict, place) -> np.ndarray:
    """Run ``place(section_indices, section_coords)`` per section and combine the layouts.

    ``section_coords`` are the section's coordinates as stored; ``place`` returns the query's layout in
    that frame. Several layouts are combined by two-pass generalised Procrustes analysis.
    """
    coords = np.asarray(reference.obsm[info["spatial_key"]], dtype=np.float64)
    preds = []
    for i, idx in enumerate(_sections(reference, info["batch_key"])):
        t0 = time.perf_counter()
        preds.append(np.asarray(place(idx, coords[idx]), dtype=np.float64))
        logger.info("section %d (%d cells) placed in %.1f s", i, len(idx), time.perf_counter() - t0)
    if len(preds) == 1:
        return preds[0]
    return generalised_procrustes(preds, n_iter=2)


def _row_normalised_barycentre(weights: np.ndarray, locations: np.ndarray) -> np.ndarray:
    """Each row's weighted mean location: ``(W / W.sum(1)) @ locations``."""
    W = np.asarray(weights, dtype=np.float64)
    W = W / np.maximum(W.sum(axis=1, keepdims=True), 1e-300)
    return W @ locations


def tangram_layout(
    reference: AnnData,
    query: AnnData,
    info: dict,
    seed: int = 0,
    *,
    num_epochs: int = 1000,
    max_genes: int | None = None,
    max_spots: int | None = None,
) -> np.ndarray:
    """Place the query with Tangram's cell mapping onto the reference cells (``mode="cells"``).

    The query (the "single-cell" data) is mapped onto each reference section (the "spatial" data) with
    ``tangram.map_cells_to_space(mode="cells", device="cpu", random_state=seed)`` and Tangram's other
    defaults (learning rate 0.1, 1000 epochs, ``lambda_g1=1``, no density term) after
    ``tangram.pp_adatas`` on the shared genes (all of them are training genes). A query cell's position
    is the mean of the spot coordinates weighted by its row of the mapping matrix (row-normalised).

    Parameters
    ----------
    reference, query, info, seed
        As returned by :func:`benchmarks.tasks.load_task`; ``seed`` is Tangram's ``random_state``.
    num_epochs
        Tangram's number of epochs (its default: 1000).
    max_genes
        If set and fewer than the shared genes, train on the ``max_genes`` shared genes with the largest
        variance of log expression in the reference (a speed-up for whole-transcriptome panels).
    max_spots
        If set, a section with more cells is represented by a random subsample of ``max_spots`` of them
        (seeded by ``seed``); the mapping matrix, and so the cost of every epoch, is
        ``n_query × n_spots``.

    Returns
    -------
    ``(query.n_obs, dim)`` coordinates.
    """
    import tangram as tg

    genes = _shared_genes(reference, query)
    Z_ref = _expression(reference, genes, info["layer"])
    Z_query = _expression(query, genes, info["layer"])
    if max_genes is not None and len(genes) > max_genes:
        keep = np.sort(np.argsort(-Z_ref.var(axis=0), kind="stable")[:max_genes])
        genes, Z_ref, Z_query = genes[keep], Z_ref[:, keep], Z_query[:, keep]
    logger.info("tangram: %d genes, %d epochs", len(genes), num_epochs)
    var = pd.DataFrame(index=np.asarray(genes, dtype=str))
    sc = AnnData(Z_query, var=var.copy())
    sc.obs_names = [f"q{i}" for i in range(sc.n_obs)]
    rng = np.random.default_rng(seed)

    def place(idx, loc):
        if max_spots is not None and len(idx) > max_spots:
            sub = np.sort(rng.choice(len(idx), size=max_spots, replace=False))
            idx, loc = idx[sub], loc[sub]
        sp = AnnData(Z_ref[idx], var=var.copy())
        sp.obs_names = [f"r{i}" for i in range(sp.n_obs)]
        sc_i = sc.copy()
        tg.pp_adatas(sc_i, sp, genes=None)
        mapping = tg.map_cells_to_space(
            sc_i, sp, mode="cells", device="cpu", num_epochs=num_epochs, random_state=seed, verbose=False
        )
        return _row_normalised_barycentre(mapping.X, loc)

    return _per_section(reference, info, place)


def novosparc_layout(
    reference: AnnData,
    query: AnnData,
    info: dict,
    seed: int = 0,
    *,
    alpha_linear: float = 0.5,
    epsilon: float = 5e-4,
    max_locations: int = 1000,
    max_cells: int = 1500,
    max_iter: int | None = None,
) -> np.ndarray:
    """Place the query with novoSpaRc's reference-based fused Gromov–Wasserstein transport.

    For each reference section, a ``novosparc.cm.Tissue`` is built with the query as the single-cell
    data, the section's locations as the target space and the section's expression of the
    shared genes as the atlas (every shared gene is a marker). ``setup_reconstruction`` uses novoSpaRc's
    defaults (5-neighbour graphs for the expression and location shortest-path costs) and
    ``reconstruct(alpha_linear, epsilon)`` its default ``epsilon=5e-4`` (raised tenfold by novoSpaRc
    itself on numerical errors) with ``alpha_linear=0.5``, the value of novoSpaRc's reference-atlas
    tutorials. A query cell's position is the mean of the locations weighted by its row of the transport
    plan (row-normalised).

    Size limits (this runs on one CPU thread; every outer iteration costs
    ``O(n_cells^2 n_loc + n_cells n_loc^2)`` and novoSpaRc runs up to 1000 of them):

    - a section with more than ``max_locations`` cells is represented by a random subsample of
      ``max_locations`` of them (seeded by ``seed``), which become the target locations and atlas rows;
    - a query with more than ``max_cells`` cells is mapped in random chunks of at most ``max_cells``
      cells (seeded by ``seed``); every chunk is mapped onto the same locations, so the chunks' layouts
      share one frame and are simply concatenated.

    novoSpaRc itself is deterministic (no random initialisation); ``seed`` only drives the subsampling.

    Parameters
    ----------
    reference, query, info, seed
        As returned by :func:`benchmarks.tasks.load_task`.
    alpha_linear
        Weight of the expression-to-atlas (linear) cost against the Gromov–Wasserstein term.
    epsilon
        Initial entropic regularisation (novoSpaRc's default).
    max_locations, max_cells
        Size limits described above (``None``: no limit).
    max_iter
        If set, caps novoSpaRc's outer iterations (its solver default is 1000) by wrapping its solver;
        ``None`` leaves novoSpaRc unchanged.

    Returns
    -------
    ``(query.n_obs, dim)`` coordinates.
    """
    import contextlib
    import functools
    import io

    import novosparc

    genes = _shared_genes(reference, query)
    Z_ref = _expression(reference, genes, info["layer"]).astype(np.float64)
    Z_query = _expression(query, genes, info["layer"]).astype(np.float64)
    rng = np.random.default_rng(seed)
    n = query.n_obs
    if max_cells is None or n <= max_cells:
        chunks = [np.arange(n)]
    else:
        chunks = np.array_split(rng.permutation(n), int(np.ceil(n / max_cells)))
    markers = np.arange(len(genes))
    var = pd.DataFrame(index=np.asarray(genes, dtype=str))

    solver = novosparc.rc._GWadjusted.gromov_wasserstein_adjusted_norm
    patched = solver if max_iter is None else functools.partial(solver, max_iter=max_iter)

    def place(idx, loc):
        if max_locations is not None and len(idx) > max_locations:
            sub = np.sort(rng.choice(len(idx), size=max_locations, replace=False))
            idx, loc = idx[sub], loc[sub]
        out = np.empty((n, loc.shape[1]))
        for chunk in chunks:
            cells = AnnData(Z_query[chunk], var=var.copy())
            tissue = novosparc.cm.Tissue(
                dataset=cells, locations=loc, atlas_matrix=Z_ref[idx], markers_to_use=markers
            )
            with contextlib.redirect_stdout(io.StringIO()):
                tissue.setup_reconstruction(
                    markers_to_use=markers, atlas_matrix=Z_ref[idx], num_neighbors_s=5, num_neighbors_t=5
                )
            novosparc.rc._GWadjusted.gromov_wasserstein_adjusted_norm = patched
            try:
                with contextlib.redirect_stdout(io.StringIO()) as log:
                    tissue.reconstruct(alpha_linear=alpha_linear, epsilon=epsilon)
            finally:
                novosparc.rc._GWadjusted.gromov_wasserstein_adjusted_norm = solver
            logger.info(
                "novosparc: %d cells -> %d locations, epsilon used %.1e (%s)",
                len(chunk),
                len(idx),
                tissue.epsilon,
                log.getvalue().strip().replace("\n", "; ")[:200],
            )
            out[chunk] = _row_normalised_barycentre(tissue.gw, loc)
        return out

    return _per_section(reference, info, place)


def celery_layout(
    reference: AnnData,
    query: AnnData,
    info: dict,
    seed: int = 0,
    *,
    hidden_dims: tuple[int, int, int] = (30, 25, 15),
    num_epochs_max: int = 500,
    batch_size: int = 4,
) -> np.ndarray:
    """Place the query with CeLEry's coordinate regression (``CeLEry.Fit_cord`` / ``Predict_cord``).

    As in CeLEry's tutorial, reference and query expression of the shared genes are z-scored per gene,
    each data set on its own mean and standard deviation (``CeLEry.get_zscore``; genes constant in one
    data set are set to 0 there instead of NaN), a deep network ``[30, 25, 15]`` is fitted with
    ``Fit_cord(hidden_dims, num_epochs_max=500, batch_size=4, seednum=seed)`` (CeLEry's defaults but
    the seed) to the reference's min–max-scaled coordinates of each section, and ``Predict_cord`` gives
    the query's coordinates. The model files go to a temporary folder.

    CeLEry's network has a fixed two-dimensional output (``DNN.fclayer4`` is ``Linear(..., 2)``) and its
    data wrapper reads only the first two coordinate columns, so three-dimensional tasks raise an error
    instead of silently dropping an axis.

    Parameters
    ----------
    reference, query, info, seed
        As returned by :func:`benchmarks.tasks.load_task`; ``seed`` is CeLEry's ``seednum``.
    hidden_dims
        Hidden layer widths (CeLEry's tutorial value).
    num_epochs_max
        Maximum number of epochs (CeLEry's default).
    batch_size
        Mini-batch size (CeLEry's default).

    Returns
    -------
    ``(query.n_obs, 2)`` coordinates.

    Raises
    ------
    RuntimeError
        If the task is not two-dimensional.
    """
    if info["dim"] != 2:
        raise RuntimeError(
            f"CeLEry predicts 2-D coordinates only (its DNN ends in Linear(..., 2) and its dataset wrapper "
            f"reads two coordinate columns); task {info.get('name')!r} is {info['dim']}-D."
        )
    import contextlib
    import io

    import CeLEry as cel

    genes = _shared_genes(reference, query)

    def zscore(Z):
        mean, sd = Z.mean(axis=0), Z.std(axis=0)
        return np.where(sd > 0, (Z - mean) / np.where(sd > 0, sd, 1.0), 0.0).astype(np.float32)

    Z_ref = _expression(reference, genes, info["layer"])
    query_ad = AnnData(zscore(_expression(query, genes, info["layer"])))

    with tempfile.TemporaryDirectory(prefix="celery_") as tmp:

        def place(idx, loc):
            train = AnnData(zscore(Z_ref[idx]))
            location = pd.DataFrame(loc, columns=["x_cord", "y_cord"])
            name = f"section{len(os.listdir(tmp))}"
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                cel.Fit_cord(
                    data_train=train,
                    location_data=location,
                    hidden_dims=list(hidden_dims),
                    num_epochs_max=num_epochs_max,
                    path=tmp,
                    filename=name,
                    batch_size=batch_size,
                    num_workers=0,
                    seednum=seed,
                )
                pred = cel.Predict_cord(data_test=query_ad.copy(), path=tmp, filename=name)
            # Predict_cord returns the min-max-scaled coordinates; map them back to the section's frame
            lo, hi = loc.min(axis=0) - 1, loc.max(axis=0) + 1
            return pred * (hi - lo) + lo

        return _per_section(reference, info, place)


#: Peer name (``run_core.py --methods``) -> (layout function, method name recorded in the CSV).
PEERS = {
    "tangram": (tangram_layout, "tangram"),
    "novosparc": (novosparc_layout, "novosparc"),
    "celery": (celery_layout, "celery"),
}
