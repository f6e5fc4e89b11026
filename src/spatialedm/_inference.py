"""Inference: turn the cells of a query into one layout (sets → network predictions → one frame).

A query larger than one set is split into overlapping random subsets that share anchor cells; each
subset is placed on its own and moved into one frame by generalised Procrustes on the anchors, so
memory grows linearly with the number of cells.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import torch

from ._constants import UNCERTAINTY_KEY
from ._distance_geometry import measure_edges, median_edges, stress_majorization
from ._proportions import match_proportions
from ._spacing import relax_spacing
from ._uncertainty import neighbor_spread, rank_disagreement
from .geometry import align_numpy, fit_similarity, generalised_procrustes, unit_rms

logger = logging.getLogger(__name__)

#: Cells shared by all subsets of a stitched layout (they fix the common frame).
N_ANCHORS = 128
#: Subsets predicted in one forward pass.
SETS_PER_PASS = 16
#: Pairs measured per cell in each piece of a distance-geometry consensus: nearest neighbours, random partners.
CONSENSUS_K, CONSENSUS_RANDOM = 10, 5


class RowSource(Protocol):
    """Anything that yields model input rows: an :class:`~spatialedm._preprocessing.ExpressionView`."""

    n_obs: int
    n_genes: int

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Model input ``(len(idx), n_genes)`` for cells ``idx``."""


class ArrayRows:
    """A :class:`RowSource` over an in-memory ``(n_obs, n_genes)`` array of model inputs.

    Parameters
    ----------
    X
        Preprocessed expression.
    """

    def __init__(self, X: np.ndarray):
        self.X = np.asarray(X, dtype=np.float32)
        self.n_obs, self.n_genes = self.X.shape

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` of the array."""
        return self.X[np.asarray(idx)]


def check_options(n_samples: int, uncertainty: str | None, consensus: bool) -> None:
    """Refuse a combination of placement options that :meth:`LayoutPredictor.predict` cannot honour."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
    if uncertainty not in ("ranks", "neighbors", "samples", None):
        raise ValueError(f"uncertainty must be 'ranks', 'neighbors', 'samples' or None, got {uncertainty!r}.")
    if uncertainty == "samples" and n_samples < 2:
        raise ValueError(f"uncertainty='samples' needs n_samples of at least 2, got {n_samples}.")
    if n_samples > 1 and uncertainty != "samples" and not consensus:
        raise ValueError(
            f"n_samples={n_samples} draws samples for uncertainty='samples' or consensus=True; "
            "set one of them, or leave n_samples at 1."
        )


class LayoutPredictor:
    """Places cells with a trained module, set by set, and assembles one layout.

    Parameters
    ----------
    module
        The trained :class:`~spatialedm._module.SpatialEDMModule` (in eval mode).
    device
        Torch device of the module.
    set_size
        Cells per set; larger queries are stitched from overlapping subsets.
    """

    def __init__(self, module, device, set_size: int):
        if set_size < 2:
            raise ValueError(f"set_size must be at least 2, got {set_size}.")
        self.module = module
        self.device = device
        self.set_size = int(set_size)

    def _predict_sets(
        self, source: RowSource, subsets, gen, stochastic, sample_kwargs, prior=None
    ) -> list[np.ndarray]:
        out = []
        for start in range(0, len(subsets), SETS_PER_PASS):
            chunk = subsets[start : start + SETS_PER_PASS]
            n_max = max(len(s) for s in chunk)
            x = np.zeros((len(chunk), n_max, source.n_genes), dtype=np.float32)
            mask = np.zeros((len(chunk), n_max), dtype=bool)
            p = None if prior is None else np.zeros((len(chunk), n_max, prior.shape[1]), dtype=np.float32)
            for b, s in enumerate(chunk):
                x[b, : len(s)] = source.rows(s)
                mask[b, : len(s)] = True
                if p is not None:  # centred in float64 first: coordinates may be large (micrometres)
                    p[b, : len(s)] = prior[s] - prior[s].mean(0)
            v = self.module.sample(
                torch.from_numpy(x).to(self.device),
                torch.from_numpy(mask).to(self.device),
                generator=gen,
                stochastic=stochastic,
                prior=None if p is None else torch.from_numpy(p).to(self.device),
                **sample_kwargs,
            )
            v = v.float().cpu().numpy()
            out.extend(v[b, : len(s)].astype(np.float64) for b, s in enumerate(chunk))
        return out

    def _draw(self, source: RowSource, gen, stochastic, sample_kwargs, prior=None) -> tuple[np.ndarray, list]:
        """One layout of every cell, and its pieces: ``(cells, positions)`` of each set as predicted."""
        n = source.n_obs
        if n <= self.set_size:
            cells = np.arange(n)
            pred = self._predict_sets(source, [cells], gen, stochastic, sample_kwargs, prior)[0]
            return pred, [(cells, pred)]
        perm = torch.randperm(n, generator=gen).numpy()
        n_anchor = min(N_ANCHORS, self.set_size // 2)
        anchors, rest = perm[:n_anchor], perm[n_anchor:]
        n_sub = int(np.ceil(len(rest) / (self.set_size - n_anchor)))
        # Spread the cells evenly over the subsets so the last one is not tiny.
        parts = np.array_split(rest, n_sub)
        subsets = [np.concatenate([anchors, p]) for p in parts]
        preds = self._predict_sets(source, subsets, gen, stochastic, sample_kwargs, prior)
        frame = generalised_procrustes([p[:n_anchor] for p in preds])
        layout = np.zeros((n, preds[0].shape[1]))
        layout[anchors] = frame
        for p, part in zip(preds, parts):
            layout[part] = fit_similarity(p[:n_anchor], frame).apply(p[n_anchor:])
        return layout, list(zip(subsets, preds))

    @torch.inference_mode()
    def predict(
        self,
        source: RowSource,
        *,
        refine: bool = True,
        n_samples: int = 1,
        sigma_start: float | None = None,
        n_steps: int | None = None,
        seed: int | None = None,
        consensus: bool = False,
        stochastic: bool = False,
        relax: bool = True,
        uncertainty: str | None = "ranks",
        prior: np.ndarray | None = None,
        prior_weight: float = 0.5,
        shape_weight: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Layout of every cell of ``source`` and each cell's uncertainty.

        Parameters
        ----------
        source
            Model input rows.
        refine, sigma_start, n_steps
            See :meth:`~spatialedm.SpatialEDM.get_latent_coordinates`.
        n_samples
            With more than one, also draw this many stochastic refinements (with fresh subsets), for
            ``uncertainty="samples"`` or ``consensus``.
        seed
            Seed of the noise and of the subsets.
        consensus
            Return the distance-geometry consensus of the deterministic layout and the ``n_samples``
            stochastic ones (see :mod:`spatialedm._distance_geometry`) instead of the deterministic layout.
        stochastic
            Return one stochastic refinement (a sample of the layout's posterior) as the layout.
        relax
            Spread the returned layout to the reference's cell spacing (:func:`~spatialedm._spacing.relax_spacing`;
            a no-op for a model without a measured spacing).
        uncertainty
            ``"ranks"``: how differently each cell and its expression neighbours rank their distances in
            the returned layout (:func:`~spatialedm._uncertainty.rank_disagreement`); ``"neighbors"``:
            each cell's spread of its expression neighbours in the returned layout
            (:func:`~spatialedm._uncertainty.neighbor_spread`); ``"samples"``: each cell's RMS distance
            of the ``n_samples`` stochastic refinements from the layout (measured before relaxation);
            ``None``: none.
        prior, prior_weight
            ``(n_obs, d)`` positions of the cells from another placement, mixed into each set's generator
            layout with this weight before the refiner (see :meth:`~spatialedm._module.SpatialEDMModule.sample`).
        shape_weight
            Move the returned layout's principal-axis proportions this far towards the reference tissue's
            (:func:`~spatialedm._proportions.match_proportions`), before relaxation; 0 leaves them.

        Returns
        -------
        ``(layout, spread)``: the layout, centred with unit per-axis RMS, and the per-cell uncertainty
        (``None`` with ``uncertainty=None``).
        """
        check_options(n_samples, uncertainty, consensus)
        gen = torch.Generator().manual_seed(
            int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, (1,)))
        )
        self.module.eval()
        kw = {"refine": refine, "sigma_start": sigma_start, "n_steps": n_steps}
        if prior is not None:
            kw["prior_weight"] = float(prior_weight)
        first, pieces = self._draw(source, gen, stochastic, kw, prior)
        layout = unit_rms(first)
        if n_samples == 1:
            layout = self._relaxed(self._reshaped(layout, shape_weight), relax, gen)
            return layout, self._from_neighbors(source, layout, gen, uncertainty) if uncertainty else None
        # Stochastic refinements (and fresh subsets) around the deterministic layout: their spread
        # is each cell's positional uncertainty, in units of the layout's per-axis RMS.
        draws = []
        for _ in range(n_samples):
            draw, more = self._draw(source, gen, True, kw, prior)
            draws.append(align_numpy(draw, layout))
            pieces.extend(more)
        if consensus:
            layout = unit_rms(_consensus(source.n_obs, pieces, layout, gen))
            draws = [align_numpy(d, layout) for d in draws]
        spread = np.sqrt(np.mean([((d - layout) ** 2).sum(1) for d in draws], axis=0))
        layout = self._relaxed(self._reshaped(layout, shape_weight), relax, gen)
        if uncertainty in ("ranks", "neighbors"):
            spread = self._from_neighbors(source, layout, gen, uncertainty)
        return layout, spread if uncertainty else None

    def _from_neighbors(
        self, source: RowSource, layout: np.ndarray, gen: torch.Generator, kind: str
    ) -> np.ndarray:
        """The uncertainty measured on the layout of each cell's expression neighbours."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        measure = rank_disagreement if kind == "ranks" else neighbor_spread
        return measure(embed_rows(self.module, self.device, source), layout, seed=seed)

    def _reshaped(self, layout: np.ndarray, shape_weight: float) -> np.ndarray:
        if shape_weight <= 0:
            return layout
        return match_proportions(layout, self.module.proportions.cpu().numpy(), shape_weight)

    def _relaxed(self, layout: np.ndarray, relax: bool, gen: torch.Generator) -> np.ndarray:
        spacing = float(self.module.spacing)
        if not relax or spacing <= 0:
            return layout
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        return relax_spacing(layout, spacing, seed=seed)


def embed_rows(module, device, source: RowSource, batch_size: int = 4096) -> np.ndarray:
    """The encoder's embedding of every cell of ``source``, in chunks of ``batch_size`` cells."""
    chunks = []
    for i in range(0, source.n_obs, batch_size):
        x = torch.from_numpy(source.rows(np.arange(i, min(i + batch_size, source.n_obs))))
        chunks.append(module.embed(x.to(device), augment=False).float().cpu().numpy())
    return np.concatenate(chunks)


def write_layout(adata, layout: np.ndarray, spread: np.ndarray | None, key_added: str, copy: bool):
    """Write ``obsm[key_added]`` (and the uncertainty in ``obs``) into ``adata`` or a copy of it.

    Returns the copy with ``copy=True``, else the layout (as :meth:`~spatialedm.SpatialEDM.get_latent_coordinates`).
    """
    target = adata.copy() if copy else adata
    target.obsm[key_added] = layout.astype(np.float32)
    if spread is not None:
        target.obs[UNCERTAINTY_KEY] = spread.astype(np.float32)
    return target if copy else layout


def _consensus(n: int, pieces, init: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """Distance-geometry consensus of the pieces: median distances of sparse pairs, then stress majorisation."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    measured = [
        measure_edges(cells, unit_rms(pos), k=CONSENSUS_K, n_random=CONSENSUS_RANDOM, rng=rng)
        for cells, pos in pieces
    ]
    i, j, d = (np.concatenate(parts) for parts in zip(*measured))
    i, j, med, _ = median_edges(i, j, d, n)
    return stress_majorization(n, i, j, med, init=init)
