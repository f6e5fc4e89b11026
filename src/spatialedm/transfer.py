"""Transfer between a reference and a query through their joint reconstruction: genes and labels.

Reference and query cells are placed together, in one reconstruction, so that both lie in one frame. The reference
part of that layout is aligned onto the reference's true coordinates by a similarity transform
(rotation or reflection in O(d), global scale, translation; one per reference section, as sections
come in unrelated frames), which also carries the query into the reference's frame. Gene projection
averages the query's expression around each reference cell; label transfer lets the reference cells
nearest to each query cell vote.

Each reference cell has two positions in the joint frame: where the model placed it
(``reference_positions="reconstructed"``) and its true coordinates moved there by the alignment
(``"true"``). Both coincide for a perfect reconstruction. Otherwise a reference cell and a query cell
with similar expression tend to be misplaced alike, so comparing reconstructed with reconstructed
positions is the default.

Both functions are also methods of the model: ``model.project_genes(query)``,
``model.transfer_labels(query, "cell_type")``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scipy.spatial import cKDTree

from ._docs import placement_dsp
from ._inference import ArrayRows, LayoutPredictor
from .geometry import fit_similarity

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._model import SpatialEDM

logger = logging.getLogger(__name__)

__all__ = ["project_genes", "transfer_labels"]

_EPS = 1e-12


def _kernel_weights(dist: np.ndarray, bandwidth: float) -> np.ndarray:
    """Row-normalised Gaussian weights of each point's k neighbours (``dist`` is ``(n, k)``)."""
    h = bandwidth * float(np.median(dist[:, -1]))
    h = max(h, _EPS)
    # subtracting each row's smallest squared distance keeps far-away points from underflowing to 0/0
    w = np.exp(-(dist**2 - dist[:, :1] ** 2) / (2 * h * h))
    return w / w.sum(1, keepdims=True)


def _check_k(k: int, n: int, what: str) -> int:
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if k > n:
        logger.info("k=%d is larger than the %d %s; using k=%d.", k, n, what, n)
        k = n
    return k


_POSITIONS = ("reconstructed", "true")


def _check_positions(reference_positions: str) -> str:
    if reference_positions not in _POSITIONS:
        raise ValueError(
            f"reference_positions must be 'reconstructed' or 'true', got {reference_positions!r}."
        )
    return reference_positions


def _reference(model: SpatialEDM, reference: AnnData | None) -> AnnData:
    if reference is None:
        reference = model.adata
    if reference is None:
        raise ValueError(
            "The model has no registered reference AnnData (it was loaded without one); pass "
            "reference= with the reference cells and their coordinates."
        )
    if not isinstance(reference, AnnData):
        raise TypeError(f"reference must be an AnnData, got {type(reference).__name__}.")
    spatial_key = model.registry_["setup_args"]["spatial_key"]
    if spatial_key not in reference.obsm:
        raise KeyError(
            f"The reference has no coordinates in obsm[{spatial_key!r}] (the model's spatial_key); "
            f"its obsm keys are {list(reference.obsm.keys())}."
        )
    return reference


def _joint_layout(
    model: SpatialEDM, query: AnnData, reference: AnnData, refine: bool, set_size, seed
) -> dict:
    """Place reference and query in one layout; align it per reference section onto the truth."""
    model._check_if_trained(warn=True)
    setup = model.registry_["setup_args"]
    batch_key, spatial_key = setup.get("batch_key"), setup["spatial_key"]
    coords = np.asarray(reference.obsm[spatial_key], dtype=np.float64)
    n_spatial = model.module.n_spatial
    if coords.ndim != 2 or coords.shape[1] != n_spatial:
        raise ValueError(
            f"reference.obsm[{spatial_key!r}] has shape {coords.shape}; the model places cells in {n_spatial}-D."
        )
    if not np.all(np.isfinite(coords)):
        raise ValueError(f"reference.obsm[{spatial_key!r}] contains NaN or infinite values.")
    if not isinstance(query, AnnData):
        raise TypeError(f"query must be an AnnData, got {type(query).__name__}.")
    # Each part is centred per its own batches (reference sections, query batches), as for either alone.
    ref_view = model.preprocessor.view(
        reference, layer=setup.get("layer"), batch_key=batch_key, what="reference"
    )
    q_view = model.expression_view(query)
    joint = ArrayRows(np.concatenate([ref_view.all_rows(), q_view.all_rows()]))
    logger.info("Placing %d reference and %d query cells in one layout.", reference.n_obs, query.n_obs)
    set_size = int(set_size or model.set_config_["max_set_size"])
    layout, _ = LayoutPredictor(model.module, model.device, set_size).predict(joint, refine=refine, seed=seed)
    lay_ref, lay_q = layout[: reference.n_obs], layout[reference.n_obs :]

    # One similarity per reference section (sections come in unrelated frames). The scale matches the
    # spreads, so that a noisy reconstruction is not shrunk towards its centre as least squares would.
    codes, names = ref_view.batch_codes, ref_view.batch_names
    fits, errors = [], {}
    ref_in_layout = np.empty_like(coords)
    for c, name in enumerate(names):
        idx = np.flatnonzero(codes == c)
        fit = fit_similarity(lay_ref[idx], coords[idx], scale="rms")
        fits.append(fit)
        resid = fit.apply(lay_ref[idx]) - coords[idx]
        spread = coords[idx] - coords[idx].mean(0)
        errors[str(name)] = float(np.sqrt((resid**2).sum() / max((spread**2).sum(), _EPS)))
        # the reference cells at their TRUE positions, moved into the joint layout's frame
        ref_in_layout[idx] = fit.invert(coords[idx])
    logger.info(
        "Alignment of the reconstructed reference onto its coordinates, relative RMS error per section: %s",
        ", ".join(f"{k}: {v:.2f}" for k, v in errors.items()),
    )
    return {
        "query_layout": lay_q,
        "reference_true": ref_in_layout,
        "reference_reconstructed": lay_ref,
        "query_in_reference": fits[0].apply(lay_q),
        "alignment_error": errors,
    }


@placement_dsp.dedent
def project_genes(
    model: SpatialEDM,
    query: AnnData,
    *,
    genes: Sequence[str] | None = None,
    reference: AnnData | None = None,
    layer: str | None = None,
    k: int = 10,
    bandwidth: float = 0.5,
    reference_positions: str = "reconstructed",
    refine: bool = True,
    set_size: int | None = None,
    seed: int | None = None,
    coords_key_added: str | None = None,
) -> AnnData:
    """Predict the expression of query genes at the reference locations.

    Like Tangram's ``project_genes``: the query (e.g. scRNA-seq with the whole transcriptome) is
    placed together with the reference cells in one reconstruction, the reference part is aligned
    onto the reference's true coordinates by a similarity transform (O(d) including reflections,
    global scale, translation; one per reference section) and the query is carried along. Each
    reference cell then gets the Gaussian-weighted average expression of the ``k`` query cells
    nearest to it. Genes the reference never measured are projected too. The reference and query
    are each centred per batch on the model's genes, as :meth:`get_latent_coordinates` does for
    either alone; query genes missing from the model's genes are set to the reference mean.

    Parameters
    ----------
    model
        A trained :class:`~spatialedm.SpatialEDM`.
    query
        Cells with expression (genes matched to the model by name; extra genes are fine).
    genes
        Query genes to project (default: all of ``query.var_names``).
    reference
        Reference cells with coordinates in ``obsm[spatial_key]`` and the model's genes (default:
        the AnnData the model was set up with; required when the model was loaded without one).
    layer
        Query layer whose values are averaged (default ``query.X``). Log-normalised values give
        log-normalised projections; raw counts give library-size-dependent averages.
    k
        Query cells averaged at each reference location.
    bandwidth
        Width of the Gaussian kernel, relative to the median distance from a reference location to
        its ``k``-th nearest query cell.
    reference_positions
        ``"reconstructed"``: the query cells nearest to where the model placed each reference cell
        in the joint layout; ``"true"``: nearest to its true coordinates carried into that layout by
        the alignment (see the module notes; the two agree for a perfect reconstruction).
    %(param_refine)s
    %(param_set_size)s
    %(param_seed)s
    coords_key_added
        If given, write the query cells' coordinates in the reference's frame (of its first section
        when it has several) to ``query.obsm[coords_key_added]``. By default the query is unchanged.

    Returns
    -------
    AnnData of reference cells × projected genes: ``X`` the projected expression (sparse when
    ``query``'s values are), ``obs`` and ``obsm[spatial_key]`` copied from the reference, ``var``
    from the query, ``var["in_reference"]`` whether the reference measured the gene, and
    ``uns["spatialedm_projection"]`` the settings and each section's alignment error (RMS residual
    over RMS spread of the coordinates).

    Examples
    --------
    >>> proj = sem.transfer.project_genes(model, query, seed=0)  # or model.project_genes(query)
    >>> proj.shape == (model.adata.n_obs, query.n_vars)
    True

    Then, e.g., ``squidpy.pl.spatial_scatter(proj, shape=None, color="g0")`` draws a projected gene.
    """
    reference = _reference(model, reference)
    if genes is None:
        genes = query.var_names
    genes = pd.Index([genes] if isinstance(genes, str) else list(genes))
    pos = query.var_names.get_indexer(genes)
    if (pos < 0).any():
        raise KeyError(
            f"{int((pos < 0).sum())} of the requested genes are not in query.var_names, e.g. "
            f"{genes[pos < 0][:5].tolist()}."
        )
    if layer is not None and layer not in query.layers:
        raise KeyError(f"layer {layer!r} is not in query.layers {list(query.layers.keys())}.")
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}.")
    _check_positions(reference_positions)
    k = _check_k(k, query.n_obs, "query cells")
    joint = _joint_layout(model, query, reference, refine, set_size, seed)

    dist, idx = cKDTree(joint["query_layout"]).query(joint[f"reference_{reference_positions}"], k=k)
    dist, idx = np.asarray(dist).reshape(reference.n_obs, k), np.asarray(idx).reshape(reference.n_obs, k)
    w = _kernel_weights(dist, bandwidth)
    W = sparse.csr_matrix(
        (w.ravel(), idx.ravel(), np.arange(0, reference.n_obs * k + 1, k)),
        shape=(reference.n_obs, query.n_obs),
    )
    values = query.layers[layer] if layer is not None else query.X
    if hasattr(values, "to_memory"):
        values = values.to_memory()
    values = values[:, pos]
    if sparse.issparse(values):
        X = sparse.csr_matrix(W @ sparse.csr_matrix(values, dtype=np.float32), dtype=np.float32)
    else:
        X = np.asarray(W @ np.asarray(values, dtype=np.float32), dtype=np.float32)

    spatial_key = model.registry_["setup_args"]["spatial_key"]
    obs = reference.obs.loc[:, [c for c in reference.obs.columns if not str(c).startswith("_scvi")]]
    var = query.var.iloc[pos].copy()
    var["in_reference"] = genes.isin(reference.var_names)
    out = AnnData(X=X, obs=obs.copy(), var=var)
    out.obsm[spatial_key] = np.array(reference.obsm[spatial_key], copy=True)
    out.uns["spatialedm_projection"] = {
        "k": k,
        "bandwidth": float(bandwidth),
        "refine": bool(refine),
        "alignment_error": joint["alignment_error"],
    }
    if coords_key_added is not None:
        query.obsm[coords_key_added] = joint["query_in_reference"].astype(np.float32)
    return out


@placement_dsp.dedent
def transfer_labels(
    model: SpatialEDM,
    query: AnnData,
    labels_key: str,
    *,
    reference: AnnData | None = None,
    k: int = 15,
    bandwidth: float = 0.5,
    reference_positions: str = "reconstructed",
    key_added: str | None = None,
    refine: bool = True,
    set_size: int | None = None,
    seed: int | None = None,
    coords_key_added: str | None = None,
) -> pd.DataFrame:
    """Transfer reference labels onto query cells by their reconstructed spatial neighbourhoods.

    Reference and query are placed in one reconstruction, and the ``k`` reference cells nearest to
    each query cell in that layout vote with Gaussian distance weights. Labels thus follow *where*
    a query cell is placed, e.g. a spatial domain or layer, rather than expression similarity
    alone.

    Parameters
    ----------
    model
        A trained :class:`~spatialedm.SpatialEDM`.
    query
        Cells to label (genes matched to the model by name).
    labels_key
        Column of ``reference.obs`` with the labels; reference cells with a missing label do not vote.
    reference
        Reference cells with coordinates and ``obs[labels_key]`` (default: the AnnData the model
        was set up with; required when the model was loaded without one).
    k
        Reference cells voting for each query cell.
    bandwidth
        Width of the Gaussian vote weights, relative to the median distance from a query cell to
        its ``k``-th nearest reference cell.
    reference_positions
        ``"reconstructed"``: the reference cells where the model placed them in the joint layout;
        ``"true"``: at their true coordinates carried into that layout by a similarity transform
        per section (O(d) including reflections, scale, translation).
    key_added
        ``query.obs`` column written with the labels (default ``f"{labels_key}_spatialedm"``); the
        winning vote fraction goes to ``f"{key_added}_score"``.
    %(param_refine)s
    %(param_set_size)s
    %(param_seed)s
    coords_key_added
        If given, also write the query's coordinates in the reference's frame (of its first section
        when it has several) to ``query.obsm[coords_key_added]``.

    Returns
    -------
    DataFrame of query cells × reference categories with the weighted vote fractions (rows sum
    to 1). ``query.obs[key_added]`` (categorical) and ``query.obs[f"{key_added}_score"]`` are written.

    Examples
    --------
    >>> probs = sem.transfer.transfer_labels(model, query, "domain", seed=0)
    >>> sorted(query.obs["domain_spatialedm"].cat.categories)
    ['a', 'b']
    """
    reference = _reference(model, reference)
    if labels_key not in reference.obs:
        raise KeyError(
            f"labels_key {labels_key!r} is not a column of reference.obs {list(reference.obs.columns)}."
        )
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}.")
    _check_positions(reference_positions)
    key_added = key_added or f"{labels_key}_spatialedm"
    labels = reference.obs[labels_key]
    cats = labels.astype("category")
    codes = cats.cat.codes.to_numpy()
    voters = np.flatnonzero(codes >= 0)
    if len(voters) == 0:
        raise ValueError(f"reference.obs[{labels_key!r}] has no labels (all missing).")
    categories = cats.cat.categories
    k = _check_k(k, len(voters), "labelled reference cells")
    joint = _joint_layout(model, query, reference, refine, set_size, seed)

    ref_layout = joint[f"reference_{reference_positions}"][voters]
    dist, nn = cKDTree(ref_layout).query(joint["query_layout"], k=k)
    dist, nn = np.asarray(dist).reshape(query.n_obs, k), np.asarray(nn).reshape(query.n_obs, k)
    w = _kernel_weights(dist, bandwidth)
    probs = np.zeros((query.n_obs, len(categories)))
    np.add.at(probs, (np.repeat(np.arange(query.n_obs), k), codes[voters][nn].ravel()), w.ravel())
    best = probs.argmax(1)
    query.obs[key_added] = pd.Categorical.from_codes(best, categories=categories)
    query.obs[f"{key_added}_score"] = probs[np.arange(query.n_obs), best].astype(np.float32)
    if coords_key_added is not None:
        query.obsm[coords_key_added] = joint["query_in_reference"].astype(np.float32)
    return pd.DataFrame(probs, index=query.obs_names.copy(), columns=pd.Index(categories, name=labels_key))
