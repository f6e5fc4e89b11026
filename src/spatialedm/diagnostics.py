"""Diagnostics of the EDM refiner: per-σ denoiser health and whole sampling chains.

Both functions take a trained model and score sets of cells with known coordinates: by default the
spatially held-out block of the reference that training never saw (stored with the model), or any
AnnData with coordinates. They are also methods of the model (``model.diagnose()``,
``model.sampling_probe()``). The scale-collapse notes in the docs explain how to read them.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from . import edm
from ._config import SetConfig
from ._constants import REGISTRY_KEYS
from ._datasplitter import SetSampler, normalize_sections
from ._validation import validate_spatial
from .geometry import center, unit_rms
from .metrics import cellwise_spearman, distance_spearman, patch_jaccard, scale_ratio

logger = logging.getLogger(__name__)

__all__ = ["diagnose", "ideal_gauge_denoiser", "sampling_probe"]

#: Default σ grid of :func:`diagnose`, in units of the model's ``sigma_data``.
DEFAULT_SIGMA_FACTORS = tuple(float(f) for f in np.geomspace(0.1, 16.0, 12))
#: Rotations of the quadrature over SO(3) (each also with a reflection) for the ideal curve in 3-D.
N_ROTATIONS_3D = 100_000


@lru_cache(maxsize=4)
def orthogonal_grid(d: int) -> np.ndarray:
    """Quadrature points over O(d) for the ideal-denoiser curve, ``(K, d, d)``.

    ``d = 2``: 3,600 rotations equally spaced in angle, each also reflected. ``d = 3``:
    :data:`N_ROTATIONS_3D` rotations drawn uniformly (random unit quaternions, fixed seed), each also
    reflected. Both cover O(d) with the Haar measure.
    """
    if d == 2:
        t = np.linspace(0.0, 2 * np.pi, 3600, endpoint=False)
        rot = np.stack([np.stack([np.cos(t), -np.sin(t)], -1), np.stack([np.sin(t), np.cos(t)], -1)], 1)
    elif d == 3:
        q = np.random.default_rng(0).normal(size=(N_ROTATIONS_3D, 4))
        w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
        rot = np.stack(
            [
                np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
            ],
            1,
        )
    else:
        raise ValueError(f"The ideal curve is available for d = 2 or 3, got d = {d}.")
    flip = np.eye(d)
    flip[-1, -1] = -1.0
    return np.concatenate([rot, rot @ flip])


def ideal_gauge_denoiser(clean: np.ndarray, noisy: np.ndarray, sigma: float) -> np.ndarray:
    """Posterior-mean denoiser when the shape is known exactly and only its O(d) orientation is not.

    With ``noisy = clean @ R.T + sigma * noise`` and ``R`` uniform over O(d), the posterior over
    ``R`` is proportional to ``exp(<noisy, clean @ R.T> / sigma**2)``, so the posterior mean is
    ``clean @ Rbar.T`` with ``Rbar`` the posterior-weighted mean rotation; the integral over O(d) is
    a quadrature on :func:`orthogonal_grid`. This is the best any denoiser can do against the
    orientation alone: its output shrinks as ``sigma`` grows, so shrinkage at high σ is expected.

    Parameters
    ----------
    clean
        ``(n, d)`` centred layout.
    noisy
        ``(n, d)`` the layout plus noise (in the layout's own orientation).
    sigma
        Noise standard deviation.

    Returns
    -------
    ``(n, d)`` posterior-mean layout.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 2))
    >>> x -= x.mean(0)
    >>> small = ideal_gauge_denoiser(x, x + 0.01 * rng.normal(size=x.shape), 0.01)
    >>> bool(np.allclose(small, x, atol=0.05))
    True
    """
    grid = orthogonal_grid(clean.shape[1])
    m = noisy.T @ clean  # <noisy, clean @ R.T> = sum(R * (noisy.T @ clean))
    logw = np.einsum("kij,ij->k", grid, m) / sigma**2
    w = np.exp(logw - logw.max())
    rbar = np.einsum("k,kij->ij", w / w.sum(), grid)
    return clean @ rbar.T


def _diagnostic_sets(
    model, adata: AnnData | None, spatial_key: str | None, n_sets: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(expression, coordinates)`` of sets from spatially held-out cells, as in training."""
    config = SetConfig(**model.set_config_)
    if adata is None:
        if model.adata is None:
            raise ValueError(
                "The model was loaded without its reference AnnData, so its held-out block is not at hand: "
                "pass an AnnData with coordinates (e.g. diagnose(model, adata)) or load the model with its reference."
            )
        held_out = model.validation_indices_
        if held_out is None or len(held_out) < 2:
            raise ValueError(
                "The model has no spatially held-out block of its reference (untrained, or trained with "
                "validation_fraction=0); pass an AnnData with coordinates to diagnose on."
            )
        view = model.expression_view(None)
        expression = view.all_rows()
        raw = np.asarray(model.adata_manager.get_from_registry(REGISTRY_KEYS.SPATIAL_KEY), dtype=np.float64)
        sections = view.batch_codes
        coords = normalize_sections(raw, sections)
        pool = np.zeros(view.n_obs, dtype=bool)
        pool[np.asarray(held_out, dtype=np.int64)] = True
    else:
        key = spatial_key or model.registry_["setup_args"]["spatial_key"]
        validate_spatial(adata, key)
        raw = np.asarray(adata.obsm[key], dtype=np.float64)
        if raw.shape[1] != model.module.n_spatial:
            raise ValueError(
                f"adata.obsm[{key!r}] has {raw.shape[1]} columns, the model places cells in "
                f"{model.module.n_spatial} dimensions."
            )
        expression = model.expression_view(adata).all_rows()
        sections = np.zeros(adata.n_obs, dtype=np.int64)
        coords = normalize_sections(raw, sections)
        pool = np.ones(adata.n_obs, dtype=bool)
    sampler = SetSampler(coords, sections, pool, config)
    sets = []
    for _ in range(n_sets):
        idx = sampler.draw(rng)
        sets.append((expression[idx], unit_rms(coords[idx])))
    return sets


@torch.inference_mode()
def diagnose(
    model,
    adata: AnnData | None = None,
    sigmas: list[float] | np.ndarray | None = None,
    n_sets: int = 16,
    seed: int | None = None,
    spatial_key: str | None = None,
    k: int = 10,
) -> pd.DataFrame:
    """Health of the EDM refiner at each noise level, beside the ideal denoiser's curve.

    For each σ and each set of spatially held-out cells, the refiner's clean target (the residual
    around the generator's layout) is noised at σ and denoised in one step. Reported, averaged over sets (``*_std``: spread over sets):

    - ``scale_ratio_output`` / ``scale_ratio_input``: :func:`~spatialedm.metrics.scale_ratio` of the
      denoised (resp. noisy) layout against the true layout (1 = right size, < 1 = shrunk);
      ``scale_ratio_ideal``: the same for :func:`ideal_gauge_denoiser`, the posterior mean when
      only the orientation is unknown, at the same absolute σ;
    - ``residual_scale_ratio_output``: the denoised residual against the true residual (the
      shrinkage of the refiner's own prediction);
    - ``patch_jaccard_*`` and ``distance_spearman_*`` of the denoised and noisy layouts;
    - ``fx_ratio_output``: RMS of the network output ``F`` over the RMS of the ``F`` that would
      give the exact clean target, ``(clean - c_skip * noisy) / c_out``.

    Parameters
    ----------
    model
        A trained :class:`~spatialedm.SpatialEDM`.
    adata
        Cells with coordinates to draw the sets from (e.g. a held-out section). ``None``: the
        reference's spatially held-out validation block, as split in training.
    sigmas
        Noise levels in units of the model's ``sigma_data`` (default
        :data:`DEFAULT_SIGMA_FACTORS`, 0.1 to 16).
    n_sets
        Sets per σ (the same sets and noise directions at every σ).
    seed
        Seed of the sets and the noise.
    spatial_key
        ``obsm`` key of ``adata``'s coordinates (default: the key registered in ``setup_anndata``).
    k
        Neighbours of ``patch_jaccard``.

    Returns
    -------
    One row per σ with ``sigma`` (absolute, in units of the set's per-axis RMS), ``sigma_over_data``
    and the columns above.

    Examples
    --------
    >>> df = sem.diagnostics.diagnose(model, sigmas=[0.5, 2.0], n_sets=2, seed=0)
    >>> list(df["sigma_over_data"])
    [0.5, 2.0]
    >>> axes = sem.pl.sigma_diagnostics(df)
    """
    model._check_if_trained(warn=True)
    module = model.module
    sd = float(module.sigma_data)
    if sd <= 0:
        raise RuntimeError("The refiner has not been trained (sigma_data is 0); train the model first.")
    factors = np.asarray(DEFAULT_SIGMA_FACTORS if sigmas is None else sigmas, dtype=np.float64)
    if factors.ndim != 1 or len(factors) == 0 or not np.all(factors > 0):
        raise ValueError(f"sigmas must be a non-empty list of positive numbers, got {sigmas!r}.")
    rng = np.random.default_rng(seed)
    sets = _diagnostic_sets(model, adata, spatial_key, n_sets, rng)
    module.eval()
    device = model.device
    rows: dict[float, list[dict]] = {float(f): [] for f in factors}
    for expr, coords in sets:
        x = torch.from_numpy(expr.astype(np.float32))[None].to(device)
        c = torch.from_numpy(coords.astype(np.float32))[None].to(device)
        mask = torch.ones(c.shape[:2], dtype=torch.bool, device=device)
        out = module.inference(x, mask, stage="refiner")
        h, v_gen = out["h"], out["v_gen"]
        v_gen = module.refiner_input(v_gen, mask, c)
        target, clean = module.refiner_target(c, v_gen, mask)
        base = v_gen
        noise = center(torch.from_numpy(rng.normal(size=coords.shape).astype(np.float32))[None].to(device))
        true = target[0].double().cpu().numpy()
        for f in factors:
            sigma = float(f) * sd
            s = torch.full((1,), sigma, device=device)
            noisy = clean + sigma * noise
            denoised, fx = module.denoise_parts(noisy, s, v_gen, h, mask)
            c_skip, c_out, _, _ = edm.preconditioning(s, sd)
            f_ideal = (clean - c_skip * noisy) / c_out
            out_layout = (base + denoised)[0].double().cpu().numpy()
            in_layout = (base + noisy)[0].double().cpu().numpy()
            ideal = ideal_gauge_denoiser(true - true.mean(0), in_layout - in_layout.mean(0), sigma)
            rows[float(f)].append(
                {
                    "scale_ratio_output": scale_ratio(out_layout, true),
                    "scale_ratio_input": scale_ratio(in_layout, true),
                    "scale_ratio_ideal": scale_ratio(ideal, true),
                    "residual_scale_ratio_output": scale_ratio(
                        denoised[0].double().cpu().numpy(), clean[0].double().cpu().numpy()
                    ),
                    "patch_jaccard_output": patch_jaccard(out_layout, true, k=k),
                    "patch_jaccard_input": patch_jaccard(in_layout, true, k=k),
                    "distance_spearman_output": distance_spearman(out_layout, true),
                    "distance_spearman_input": distance_spearman(in_layout, true),
                    "fx_ratio_output": float(fx.pow(2).mean().sqrt() / f_ideal.pow(2).mean().sqrt()),
                }
            )
    records = []
    for f, per_set in rows.items():
        df = pd.DataFrame(per_set)
        rec = {"sigma": f * sd, "sigma_over_data": f, "n_sets": len(df)}
        for col in df.columns:
            rec[col] = float(df[col].mean())
            rec[f"{col}_std"] = float(df[col].std(ddof=1)) if len(df) > 1 else 0.0
        records.append(rec)
    return pd.DataFrame.from_records(records)


@torch.inference_mode()
def sampling_probe(
    model,
    adata: AnnData | None = None,
    sigma_starts: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0),
    n_steps: int | tuple[int, ...] = (1, 4),
    n_sets: int = 16,
    seed: int | None = None,
    spatial_key: str | None = None,
    k: int = 10,
) -> pd.DataFrame:
    """Open-loop probe: score whole sampling chains at their end, on spatially held-out sets.

    Chains: the generator alone; the refiner started from the generator's layout without noise
    (the default of :meth:`~spatialedm.SpatialEDM.get_latent_coordinates`) and with noise at each ``sigma_starts``
    (a posterior sample).

    Parameters
    ----------
    model
        A trained :class:`~spatialedm.SpatialEDM`.
    adata, spatial_key, n_sets, seed, k
        As in :func:`diagnose`.
    sigma_starts
        Starting noise levels, in units of ``sigma_data`` (capped at the trained maximum).
    n_steps
        Heun steps of each chain (one value or several).

    Returns
    -------
    One row per chain with ``start`` (``generator``, ``deterministic`` or ``stochastic``), ``sigma_start``, ``n_steps`` and the mean and spread over sets of
    ``cellwise_spearman``, ``patch_jaccard`` and ``scale_ratio`` against the true layout.

    Examples
    --------
    >>> df = sem.diagnostics.sampling_probe(model, sigma_starts=(1.0,), n_steps=1, n_sets=2, seed=0)
    >>> df["start"].tolist()
    ['generator', 'deterministic', 'stochastic']
    """
    model._check_if_trained(warn=True)
    module = model.module
    if float(module.sigma_data) <= 0:
        raise RuntimeError("The refiner has not been trained (sigma_data is 0); train the model first.")
    steps = (n_steps,) if isinstance(n_steps, int) else tuple(n_steps)
    rng = np.random.default_rng(seed)
    sets = _diagnostic_sets(model, adata, spatial_key, n_sets, rng)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
    module.eval()
    chains = [("generator", np.nan, 0, {"refine": False})]
    for n in steps:
        for s in sigma_starts:
            chains.append(("deterministic", s, n, {"sigma_start": s, "n_steps": n}))
            chains.append(("stochastic", s, n, {"sigma_start": s, "n_steps": n, "stochastic": True}))
    records = []
    for start, s, n, kw in chains:
        scores = []
        for expr, coords in sets:
            x = torch.from_numpy(expr.astype(np.float32))[None].to(model.device)
            v = module.sample(x, generator=gen, **kw)[0].double().cpu().numpy()
            scores.append(
                {
                    "cellwise_spearman": cellwise_spearman(v, coords),
                    "patch_jaccard": patch_jaccard(v, coords, k=k),
                    "scale_ratio": scale_ratio(v, coords),
                }
            )
        df = pd.DataFrame(scores)
        rec = {"start": start, "sigma_start": s, "n_steps": n}
        for col in df.columns:
            rec[col] = float(df[col].mean())
            rec[f"{col}_std"] = float(df[col].std(ddof=1))
        records.append(rec)
    return pd.DataFrame.from_records(records)
