"""Held-out reconstruction tasks: split spatial data into a reference and a query.

Every split returns ``(reference, query)`` as independent AnnData copies. The query keeps its true
coordinates in ``obsm[spatial_key]`` so that a prediction can be scored; a method must never read them
(the caller strips them before handing the query to a model). Both objects get ``uns["task"]``, a dict
describing the split.

Splits are spatial where that is possible, because a random per-cell split leaks each query cell's
neighbours into the reference; :func:`split_random` exists to measure that leak.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from spatialedm import datasets
from spatialedm.datasets import split_by_mask, split_halves

logger = logging.getLogger(__name__)

__all__ = [
    "available_tasks",
    "capture_log2_ratios",
    "load_task",
    "platform_shift",
    "split_end_slab",
    "split_halves",
    "split_random",
    "split_section",
]

#: Environment variable naming the folder of the multi-section benchmark files.
SHARED_DATA_ENV = "SPATIALEDM_SHARED_DATA"

_SHARED_FILES = {
    "starmap_section": "starmap_mpfc.h5ad",
    "dlpfc_section": "dlpfc_donor3.h5ad",
    "merfish_section": "merfish_hypothalamus.h5ad",
    "her2st_section": "her2st_patient_b.h5ad",
}
#: Layer normal of the osmFISH section (duplicates removed) for ``osmfish_halves``.
OSMFISH_LAYER_NORMAL = (0.43837114678907746, 0.898794046299167)

TASKS = (
    "osmfish_halves",
    "osmfish_random",
    "embryo_slab",
    "embryo_random",
    "starmap_section",
    "dlpfc_section",
    "merfish_section",
    "her2st_section",
)
#: Cells onto spots: the base task's reference pooled into Visium-like spots of ~8 cells, its query single cells.
SPOT_TASKS = {
    "osmfish_spots": "osmfish_halves",
    "starmap_spots": "starmap_section",
    "merfish_spots": "merfish_section",
}
#: Platform shift: the base task's query made scRNA-seq-like (thinned, per-gene capture factors).
SHIFT_TASKS = {
    "osmfish_shift": "osmfish_halves",
    "starmap_shift": "starmap_section",
    "merfish_shift": "merfish_section",
}
#: Spot to spot: spot-level references and queries of the same technology.
SPOT_SPOT_TASKS = ("her2st_section", "dlpfc_section")
#: Cells per spot of the pooled references (a 55 µm Visium spot holds about 5-10 cells of cortex).
CELLS_PER_SPOT = 8.0
#: Fraction of a query's counts kept by the platform shift before the per-gene capture factors.
SHIFT_DEPTH = 0.5
#: Bound on a gene's capture factor relative to the panel's geometric mean (log2 units): 8-fold either way.
SHIFT_MAX_LOG2 = 3.0
ALL_TASKS = (*TASKS, *SPOT_TASKS, *SHIFT_TASKS)


def _coords(adata: AnnData, spatial_key: str) -> np.ndarray:
    if spatial_key not in adata.obsm:
        raise KeyError(f"spatial_key {spatial_key!r} not found in adata.obsm.")
    return np.asarray(adata.obsm[spatial_key], dtype=np.float64)


def split_end_slab(
    adata: AnnData, *, fraction: float = 0.25, spatial_key: str = "spatial"
) -> tuple[AnnData, AnnData]:
    """Hold out the slab at one end of the tissue's long axis.

    The long axis is the first principal axis of the coordinates; the ``fraction`` of cells with the
    largest projection on it form the query (the axis is oriented so that its largest component is
    positive, which makes the choice of end deterministic).

    Parameters
    ----------
    adata
        Spatial data with coordinates in ``obsm[spatial_key]``.
    fraction
        Fraction of cells held out, in ``(0, 1)``.
    spatial_key
        Key of the coordinates in ``adata.obsm``.

    Returns
    -------
    ``(reference, query)`` copies with ``uns["task"]`` set.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> a = ad.AnnData(np.ones((8, 2)))
    >>> a.obsm["spatial"] = np.c_[np.arange(8.0), np.zeros(8)]
    >>> ref, query = split_end_slab(a, fraction=0.25)
    >>> query.obsm["spatial"][:, 0].tolist()
    [6.0, 7.0]
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}.")
    coords = _coords(adata, spatial_key)
    C = coords - coords.mean(axis=0, keepdims=True)
    long_axis = np.linalg.svd(C, full_matrices=False)[2][0]
    if long_axis[np.argmax(np.abs(long_axis))] < 0:
        long_axis = -long_axis
    proj = C @ long_axis
    n_query = int(round(fraction * adata.n_obs))
    query_mask = np.zeros(adata.n_obs, dtype=bool)
    query_mask[np.argsort(proj, kind="stable")[adata.n_obs - n_query :]] = True
    task = {
        "name": "end_slab",
        "description": f"end slab: the {fraction:.0%} of cells furthest along the long (first principal) axis",
        "fraction": float(fraction),
        "long_axis": long_axis.tolist(),
    }
    return split_by_mask(adata, query_mask, task)


def split_random(adata: AnnData, *, fraction: float = 0.3, seed: int = 0) -> tuple[AnnData, AnnData]:
    """Hold out a random ``fraction`` of cells (leaks neighbours: an optimistic control, not a benchmark).

    Parameters
    ----------
    adata
        Spatial data.
    fraction
        Fraction of cells held out, in ``(0, 1)``.
    seed
        Seed of the random generator.

    Returns
    -------
    ``(reference, query)`` copies with ``uns["task"]`` set.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> ref, query = split_random(ad.AnnData(np.ones((10, 2))), fraction=0.3)
    >>> ref.n_obs, query.n_obs
    (7, 3)
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}.")
    n_query = int(round(fraction * adata.n_obs))
    query_mask = np.zeros(adata.n_obs, dtype=bool)
    query_mask[np.random.default_rng(seed).permutation(adata.n_obs)[:n_query]] = True
    task = {
        "name": "random",
        "description": f"random {fraction:.0%} of cells held out (seed {seed})",
        "fraction": float(fraction),
        "seed": int(seed),
    }
    return split_by_mask(adata, query_mask, task)


def split_section(
    adata: AnnData, *, batch_key: str = "section", section: str | None = None
) -> tuple[AnnData, AnnData]:
    """Hold out one whole section.

    Parameters
    ----------
    adata
        Data with several sections named in ``obs[batch_key]``.
    batch_key
        Column of ``adata.obs`` naming sections.
    section
        The section held out; ``None`` takes the last category (the last in sorted order when the
        column is not categorical).

    Returns
    -------
    ``(reference, query)`` copies with ``uns["task"]`` set.

    Examples
    --------
    >>> import numpy as np, pandas as pd, anndata as ad
    >>> a = ad.AnnData(np.ones((6, 2)))
    >>> a.obs["section"] = pd.Categorical(["a", "a", "b", "b", "c", "c"])
    >>> ref, query = split_section(a)
    >>> query.obs["section"].unique().tolist()
    ['c']
    """
    if batch_key not in adata.obs:
        raise KeyError(f"batch_key {batch_key!r} not found in adata.obs.")
    col = adata.obs[batch_key]
    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(col.astype(str))
        categories = [str(c) for c in col.cat.categories if str(c) in present]
    else:
        categories = sorted(col.astype(str).unique())
    if len(categories) < 2:
        raise ValueError(f"obs[{batch_key!r}] has {len(categories)} section(s); at least 2 are needed.")
    if section is None:
        section = categories[-1]
    elif str(section) not in categories:
        raise ValueError(f"section {section!r} not in obs[{batch_key!r}] (available: {categories}).")
    query_mask = np.asarray(col.astype(str) == str(section))
    task = {
        "name": "section",
        "description": f"section {section} held out; reference = the other {len(categories) - 1} section(s)",
        "batch_key": batch_key,
        "section": str(section),
    }
    reference, query = split_by_mask(adata, query_mask, task)
    for a in (reference, query):
        if isinstance(a.obs[batch_key].dtype, pd.CategoricalDtype):
            a.obs[batch_key] = a.obs[batch_key].cat.remove_unused_categories()
    return reference, query


def shared_data_dir() -> Path:
    """Return the folder of the multi-section benchmark files (it need not exist).

    The environment variable ``SPATIALEDM_SHARED_DATA`` wins; otherwise ``<repo root>/../shared/data``,
    the repository root being the first folder at or above the working directory that holds
    ``pyproject.toml`` (the working directory itself when none does).

    Returns
    -------
    The folder's path.

    Examples
    --------
    >>> isinstance(shared_data_dir(), Path)
    True
    """
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env)
    cwd = Path.cwd().resolve()
    root = next((p for p in (cwd, *cwd.parents) if (p / "pyproject.toml").is_file()), cwd)
    return root.parent / "shared" / "data"


def _read_shared(name: str) -> AnnData:
    import anndata as ad

    path = shared_data_dir() / _SHARED_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"Task {name!r} needs {path}, which does not exist. Set the environment variable "
            f"{SHARED_DATA_ENV} to the folder holding {_SHARED_FILES[name]}, or run from inside a checkout "
            "that has ../shared/data beside it."
        )
    return ad.read_h5ad(path)


def _log_normalize_inplace(adata: AnnData) -> None:
    """Normalise non-integer count-like data (MERFISH volume-normalised counts) as scanpy does.

    Library size to the median library size, then ``log1p``; the raw values stay in ``layers["counts"]``.
    """
    import scanpy as sc

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)


def capture_log2_ratios() -> pd.Series:
    """Per-gene capture of scRNA-seq relative to osmFISH, measured on the shipped pair (log2, by gene).

    Each assay's counts are divided by each cell's total over the 33 shared genes and averaged over cells;
    the ratio of the two means (scRNA-seq over osmFISH) is how much more or less often the dissociated
    assay detects a gene, beyond depth. Centred on its geometric mean.

    Returns
    -------
    log2 ratios indexed by gene name (33 genes; spread about 3 log2 units).
    """
    from scipy import sparse

    spatial, scrna = datasets.osmfish_cortex(), datasets.osmfish_scrna()
    genes = spatial.var_names.intersection(scrna.var_names)

    def profile(a):
        X = a[:, genes].layers["counts"]
        X = np.asarray(X.toarray() if sparse.issparse(X) else X, dtype=np.float64)
        return (X / np.maximum(X.sum(1, keepdims=True), 1)).mean(0)

    r = np.log2(profile(scrna) / profile(spatial))
    return pd.Series(r - r.mean(), index=genes)


def platform_shift(query: AnnData, *, seed: int = 0, depth: float = SHIFT_DEPTH) -> AnnData:
    """Make a query look measured by another platform: binomial thinning with per-gene capture factors.

    Gene ``g`` keeps each count with probability ``min(1, depth * 2**r_g)``, ``r_g`` its measured capture
    log2 ratio (:func:`capture_log2_ratios`, clipped to ±``SHIFT_MAX_LOG2``) where the gene was measured,
    otherwise one of the measured ratios drawn at random (``seed``). After library-size normalisation a
    gene is then up to 8-fold over- or under-detected relative to the reference. Non-integer count-like
    values (MERFISH) are stochastically rounded first; their log-normalised ``X`` is recomputed.

    Parameters
    ----------
    query
        Query with counts in ``X`` or, for log-normalised tasks, in ``layers["counts"]``.
    seed
        Seed of the thinning and of the factors' draw.
    depth
        Overall fraction of counts kept at the panel's geometric-mean capture.

    Returns
    -------
    A shifted copy; ``uns["task"]["shift"]`` records the settings.
    """
    from scipy import sparse

    rng = np.random.default_rng([seed, 29])
    measured = capture_log2_ratios().clip(-SHIFT_MAX_LOG2, SHIFT_MAX_LOG2)
    r = measured.reindex(query.var_names).to_numpy()
    missing = ~np.isfinite(r)
    r[missing] = rng.choice(measured.to_numpy(), size=int(missing.sum()), replace=True)
    p = np.minimum(1.0, depth * 2.0**r)
    out = query.copy()
    lognormal = _holds_lognormal(out)
    X = out.layers["counts"] if lognormal else out.X
    X = np.asarray(X.toarray() if sparse.issparse(X) else X, dtype=np.float64)
    X = np.floor(X + rng.random(X.shape))  # stochastic rounding (a no-op on integers)
    thinned = rng.binomial(X.astype(np.int64), p[None, :]).astype(np.float32)
    out.X = sparse.csr_matrix(thinned)
    if lognormal:
        out.uns.pop("log1p", None)
        _log_normalize_inplace(out)
    elif "counts" in out.layers:
        out.layers["counts"] = out.X.copy()
    keep = np.asarray(thinned.sum(1)).ravel() > 0  # a cell left without counts carries no information
    out = out[keep].copy()
    out.uns["task"] = {
        **out.uns["task"],
        "shift": {
            "depth": depth,
            "max_log2": SHIFT_MAX_LOG2,
            "n_factors_drawn": int(missing.sum()),
            "seed": seed,
        },
    }
    return out


def _holds_lognormal(adata: AnnData) -> bool:
    """Whether ``X`` holds log-normalised values computed from ``layers["counts"]`` (the MERFISH task)."""
    from scipy import sparse

    if "counts" not in adata.layers:
        return False
    X = adata.X[: min(500, adata.n_obs)]
    vals = X.data if sparse.issparse(X) else np.asarray(X)
    return not np.allclose(vals, np.round(vals))


def _spots_reference(reference: AnnData, info: dict) -> AnnData:
    """The reference pooled into spots of ``CELLS_PER_SPOT`` cells (counts summed), as a Visium reference."""
    from spatialedm.datasets import pool_spots

    lognormal = _holds_lognormal(reference)
    spots = pool_spots(
        reference,
        cells_per_spot=CELLS_PER_SPOT,
        spatial_key=info["spatial_key"],
        batch_key=info["batch_key"],
        layer="counts" if lognormal else None,
        labels_key=info["labels_key"],
    )
    if lognormal:
        spots.X = spots.layers["counts"].copy()
        del spots.layers["counts"]
        _log_normalize_inplace(spots)
    elif "counts" in reference.layers:
        spots.layers["counts"] = spots.X.copy()
    spots.uns["task"] = {**reference.uns["task"], "pooled": {"cells_per_spot": CELLS_PER_SPOT}}
    return spots


def available_tasks() -> list[str]:
    """List the task names whose data can be loaded here.

    The osmFISH and embryo tasks use data shipped with :mod:`spatialedm.datasets`; the section tasks need
    the files in :func:`shared_data_dir`.

    Returns
    -------
    Task names, a subset of ``TASKS`` in its order.

    Examples
    --------
    >>> set(available_tasks()) <= set(ALL_TASKS)
    True
    """

    def loadable(name):
        name = SPOT_TASKS.get(name) or SHIFT_TASKS.get(name) or name
        return name not in _SHARED_FILES or (shared_data_dir() / _SHARED_FILES[name]).is_file()

    return [name for name in ALL_TASKS if loadable(name)]


def load_task(name: str, seed: int = 0) -> tuple[AnnData, AnnData, dict]:
    """Load a named held-out reconstruction task.

    ===================  ==================================================================================
    name                 split
    ===================  ==================================================================================
    ``osmfish_halves``   osmFISH cortex (3,405 cells × 33 genes, counts): :func:`split_halves` (fixed normal)
    ``osmfish_random``   osmFISH cortex: :func:`split_random` (30%, ``seed``)
    ``embryo_slab``      Drosophila embryo (3,039 × 84, normalised, 3-D): :func:`split_end_slab` (25%)
    ``embryo_random``    Drosophila embryo: :func:`split_random` (30%, ``seed``)
    ``starmap_section``  STARmap mPFC, 3 mice: the last mouse held out
    ``dlpfc_section``    Visium DLPFC donor 3, 4 sections × 1,125 genes: the last section held out
    ``merfish_section``  MERFISH hypothalamus, 2 sections: the last section held out
    ``her2st_section``   HER2+ breast tumour, legacy ST spots, 6 sections × 3,000 genes: B1 (labelled) held out
    ``*_spots``          cells onto spots: ``osmfish_halves``, ``starmap_section``, ``merfish_section`` with the
                         reference pooled into spots of ~8 cells (:func:`spatialedm.datasets.pool_spots`)
    ``*_shift``          platform shift: the same three with the query thinned (:func:`platform_shift`)
    ===================  ==================================================================================

    osmFISH's 316 rows flagged ``obs["duplicate"]`` (exact copies of other rows) are dropped first
    (3,089 cells remain). The last three read ``*.h5ad`` files from :func:`shared_data_dir`. MERFISH values are
    volume-normalised counts (not integers): they are library-size normalised and ``log1p``-transformed
    into ``X`` (raw values kept in ``layers["counts"]``), so every method sees log-normalised expression.

    Parameters
    ----------
    name
        Task name, one of ``TASKS``.
    seed
        Seed of the random splits (ignored by the spatial ones).

    Returns
    -------
    ``(reference, query, info)``; the query still holds its true coordinates in ``obsm["spatial"]``.
    ``info`` has ``layer`` and ``batch_key`` (pass them to ``SpatialEDM.setup_anndata`` and to the
    baselines; ``batch_key`` is ``None`` for single-section data), plus ``name``, ``spatial_key``, ``dim``
    ``description`` and ``labels_key`` (the ``obs`` column of cell labels for the neighbourhood-enrichment
    agreement, ``None`` without labels).

    Examples
    --------
    >>> ref, query, info = load_task("embryo_slab")  # doctest: +SKIP
    >>> info["dim"]  # doctest: +SKIP
    3
    """
    if name in SPOT_TASKS or name in SHIFT_TASKS:
        base = SPOT_TASKS.get(name) or SHIFT_TASKS[name]
        reference, query, info = load_task(base, seed=seed)
        if name in SPOT_TASKS:
            reference = _spots_reference(reference, info)
            description = f"{info['description']}; reference pooled into spots of ~{CELLS_PER_SPOT:g} cells"
        else:
            query = platform_shift(query, seed=seed)
            description = (
                f"{info['description']}; query thinned to {SHIFT_DEPTH:g} with per-gene capture factors"
            )
        info = {**info, "name": name, "description": description, "base": base}
        for a in (reference, query):
            a.uns["task"]["task_name"] = name
        logger.info("task %s: %d reference, %d query cells", name, reference.n_obs, query.n_obs)
        return reference, query, info
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; choose from {list(ALL_TASKS)}.")
    if name.startswith("osmfish") or name.startswith("embryo"):
        if name.startswith("osmfish"):
            adata = datasets.osmfish_cortex()
            if "duplicate" in adata.obs:  # exact copies sit at distance 0 and distort neighbourhoods
                adata = adata[~adata.obs["duplicate"].to_numpy(bool)].copy()
        else:
            adata = datasets.drosophila_embryo()
        if name == "osmfish_halves":
            # The layer normal estimated by split_halves with spatialedm 0.1.0's preprocessing, fixed so that
            # every result (and the peers' runs) uses the same two halves.
            reference, query = split_halves(adata, axis=OSMFISH_LAYER_NORMAL)
        elif name == "embryo_slab":
            reference, query = split_end_slab(adata, fraction=0.25)
        else:
            reference, query = split_random(adata, fraction=0.3, seed=seed)
    else:
        adata = _read_shared(name)
        if name == "merfish_section":  # volume-normalised counts (not integers)
            _log_normalize_inplace(adata)
        if name == "her2st_section":  # 3 of the 1,712 spots hold no counts at all
            adata = adata[np.asarray(adata.X.sum(1)).ravel() > 0].copy()
        # her2st: hold out B1, the one section with pathologist labels (for the enrichment agreement)
        held_out = "B1" if name == "her2st_section" else None
        reference, query = split_section(adata, batch_key="section", section=held_out)

    batch_key = "section" if "section" in reference.obs and reference.obs["section"].nunique() > 1 else None
    labels = {
        "starmap_section": "cell_type",
        "dlpfc_section": "layer",
        "merfish_section": "cell_class",
        "her2st_section": "path_label",
    }
    info = {
        "name": name,
        "labels_key": labels.get(name),
        "layer": None,
        "batch_key": batch_key,
        "spatial_key": "spatial",
        "dim": int(reference.obsm["spatial"].shape[1]),
        "description": reference.uns["task"]["description"],
    }
    for a in (reference, query):
        a.uns["task"]["task_name"] = name
    logger.info("task %s: %d reference, %d query cells", name, reference.n_obs, query.n_obs)
    return reference, query, info
