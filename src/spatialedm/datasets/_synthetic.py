"""A fast synthetic spatial-transcriptomics tissue with known structure, for tests and benchmarks."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

logger = logging.getLogger(__name__)

__all__ = ["synthetic_tissue"]

_N_LAYERS = 4
_N_TYPES = 8
_BLOB_CENTRE = 0.68, 0.32, 0.5  # off-centre so the blob breaks the symmetry of the layers
_BLOB_RADIUS = 0.2
_DENSE_LIMIT = 5e6  # n_cells * n_genes above this: X is stored as CSR
_CHUNK = 200_000  # cells per generation chunk, bounds peak memory for very large tissues
_NB_THETA = 5.0  # negative-binomial dispersion (inverse over-dispersion)
_FIELD_SCALE = 0.6  # SD of the loadings of genes on the smooth spatial fields


def _random_orthogonal(rng: np.random.Generator, dim: int) -> np.ndarray:
    """Haar-random element of O(dim): rotations and reflections equally likely."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    # sign fix makes the QR factor Haar-distributed; det is then ±1 with equal probability
    return q * np.sign(np.diag(r))


def _domains(u: np.ndarray) -> np.ndarray:
    """Domain index per cell: wavy layers along axis 0, overwritten by a radial blob."""
    dim = u.shape[1]
    # wavy boundaries make layer identity depend on axis 1 (and 2) as well
    wave = 0.06 * np.sin(2 * np.pi * u[:, 1])
    if dim == 3:
        wave = wave + 0.04 * np.cos(2 * np.pi * u[:, 2])
    layer = np.clip(((u[:, 0] + wave) * _N_LAYERS).astype(np.int64), 0, _N_LAYERS - 1)
    centre = np.asarray(_BLOB_CENTRE[:dim], dtype=u.dtype)
    in_blob = ((u - centre) ** 2).sum(1) < _BLOB_RADIUS**2
    return np.where(in_blob, _N_LAYERS, layer)


def _spatial_features(u: np.ndarray) -> np.ndarray:
    """Smooth spatial fields (cells × fields) that modulate expression on every axis."""
    centre = np.asarray(_BLOB_CENTRE[: u.shape[1]], dtype=u.dtype)
    radial = np.sqrt(((u - centre) ** 2).sum(1))
    cols = [u[:, a] - 0.5 for a in range(u.shape[1])]
    cols += [np.sin(2 * np.pi * u[:, a]) * 0.5 for a in range(1, u.shape[1])]
    cols.append(np.exp(-((radial / 0.3) ** 2)) - 0.5)
    return np.stack(cols, axis=1)


def synthetic_tissue(
    n_cells: int = 2000,
    n_genes: int = 50,
    n_sections: int = 1,
    dim: int = 2,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate a spatial-transcriptomics tissue with domains, cell types, gradients and batch effects.

    Every section samples the same tissue: a unit square (``dim=2``) or cube (``dim=3``) with four
    wavy layers along the first axis and an off-centre round blob, i.e. five spatial domains. Each
    domain has its own cell-type proportions (8 types). Expression is negative-binomial counts whose
    log-mean is the sum of a cell-type profile (with marker genes), smooth spatial gradients along every
    axis, a per-cell library size and a per-section, per-gene multiplicative technical factor (so batch
    correction matters). Each section's coordinates then get their own random rotation/reflection,
    scale and translation, as real sections arrive in unrelated frames.

    Parameters
    ----------
    n_cells
        Total number of cells, split as evenly as possible across sections.
    n_genes
        Number of genes (at least 2).
    n_sections
        Number of sections (batches), at most ``n_cells``.
    dim
        Spatial dimension, 2 or 3.
    seed
        Seed of the random generator; the output is a deterministic function of all arguments.

    Returns
    -------
    anndata.AnnData
        ``X`` and ``layers["counts"]``: integer-valued float32 counts, dense when
        ``n_cells * n_genes <= 5e6`` and CSR otherwise; ``obsm["spatial"]``: (n_cells, dim) float32
        coordinates in each section's own random frame; ``obsm["spatial_canonical"]``: the shared
        tissue frame in [0, 1]^dim before the per-section transform (ground truth for alignment);
        ``obs["section"]`` (categorical ``"s0"``, ``"s1"``, …), ``obs["cell_type"]`` (``"t0"``…``"t7"``)
        and ``obs["domain"]`` (``"L1"``…``"L4"``, ``"blob"``); ``uns["synthetic"]``: the parameters.

    Examples
    --------
    >>> from spatialedm.datasets import synthetic_tissue
    >>> adata = synthetic_tissue(n_cells=500, n_genes=20, n_sections=2, seed=1)
    >>> adata.shape
    (500, 20)
    >>> list(adata.obs["section"].cat.categories)
    ['s0', 's1']
    >>> adata.obsm["spatial"].shape
    (500, 2)
    """
    n_cells, n_genes, n_sections, dim = int(n_cells), int(n_genes), int(n_sections), int(dim)
    if dim not in (2, 3):
        raise ValueError(f"`dim` must be 2 or 3, got {dim}.")
    if n_genes < 2:
        raise ValueError(f"`n_genes` must be at least 2, got {n_genes}.")
    if n_sections < 1:
        raise ValueError(f"`n_sections` must be at least 1, got {n_sections}.")
    if n_cells < max(2, n_sections):
        raise ValueError(
            f"`n_cells` must be at least max(2, n_sections) = {max(2, n_sections)}, got {n_cells}."
        )

    rng = np.random.default_rng(seed)
    n_domains = _N_LAYERS + 1

    # --- tissue-level parameters (shared by all sections) ---
    # sparse Dirichlet: each domain is dominated by a few types, so type carries position
    props = rng.dirichlet(np.full(_N_TYPES, 0.4), size=n_domains)
    cum_props = np.cumsum(props, axis=1)
    cum_props[:, -1] = 1.0
    base = rng.normal(0.3, 0.7, size=n_genes)
    type_logmean = base + rng.normal(0.0, 0.3, size=(_N_TYPES, n_genes))
    n_markers = max(1, n_genes // _N_TYPES)
    for t in range(_N_TYPES):
        type_logmean[t, rng.choice(n_genes, size=n_markers, replace=False)] += 2.0
    n_fields = _spatial_features(np.zeros((1, dim))).shape[1]
    field_loadings = rng.normal(0.0, _FIELD_SCALE, size=(n_fields, n_genes))
    # per-section technical factor per gene: multiplicative, log-normal
    section_logfactor = rng.normal(0.0, 0.4, size=(n_sections, n_genes))

    sizes = np.full(n_sections, n_cells // n_sections)
    sizes[: n_cells % n_sections] += 1
    section = np.repeat(np.arange(n_sections), sizes)

    canonical = rng.random((n_cells, dim))
    domain = _domains(canonical)
    u = rng.random(n_cells)
    cell_type = (u[:, None] > cum_props[domain]).sum(1)

    # --- per-section coordinate frames ---
    spatial = np.empty((n_cells, dim), dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for s in range(n_sections):
        sl = slice(starts[s], starts[s + 1])
        rot = _random_orthogonal(rng, dim)
        scale = 1000.0 * np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        shift = rng.normal(0.0, 2000.0, size=dim)
        spatial[sl] = ((canonical[sl] - 0.5) @ rot) * scale + shift

    # --- counts, in chunks so peak memory stays ~ a few hundred MB per chunk ---
    as_sparse = n_cells * n_genes > _DENSE_LIMIT
    blocks = []
    for lo in range(0, n_cells, _CHUNK):
        hi = min(lo + _CHUNK, n_cells)
        logmu = type_logmean[cell_type[lo:hi]]
        logmu += _spatial_features(canonical[lo:hi]) @ field_loadings
        logmu += section_logfactor[section[lo:hi]]
        logmu += rng.normal(0.0, 0.2, size=(hi - lo, 1))  # library size
        mu = np.exp(np.minimum(logmu, np.log(1e4)))  # cap keeps the NB sampler in a sane range
        # negative binomial as a gamma-Poisson mixture: ~1.5x faster than rng.negative_binomial
        lam = rng.standard_gamma(_NB_THETA, size=mu.shape, dtype=np.float32) * (mu / _NB_THETA)
        counts = rng.poisson(lam).astype(np.float32)
        blocks.append(sparse.csr_matrix(counts) if as_sparse else counts)
        del logmu, mu, lam, counts
    x = sparse.vstack(blocks, format="csr") if as_sparse else np.concatenate(blocks, axis=0)
    del blocks

    domain_names = [f"L{i + 1}" for i in range(_N_LAYERS)] + ["blob"]
    obs = pd.DataFrame(
        {
            "section": pd.Categorical.from_codes(section, categories=[f"s{i}" for i in range(n_sections)]),
            "cell_type": pd.Categorical.from_codes(cell_type, categories=[f"t{i}" for i in range(_N_TYPES)]),
            "domain": pd.Categorical.from_codes(domain, categories=domain_names),
        },
        index=pd.Index(np.char.add("cell_", np.arange(n_cells).astype(str)).astype(object)),
    )
    var = pd.DataFrame(index=pd.Index([f"gene_{j}" for j in range(n_genes)]))
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.layers["counts"] = x.copy()
    adata.obsm["spatial"] = spatial
    adata.obsm["spatial_canonical"] = canonical.astype(np.float32)
    adata.uns["synthetic"] = {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "n_sections": n_sections,
        "dim": dim,
        "seed": seed,
    }
    logger.info(
        "synthetic tissue: %d cells x %d genes, %d section(s), %d-D", n_cells, n_genes, n_sections, dim
    )
    return adata
