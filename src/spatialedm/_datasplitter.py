"""Training sets drawn from reference sections, and the data splitter that serves them to Lightning.

A training example is a *set* of cells with their expression and the set's own normalised
coordinates. Sets mix local patches with random subsets of a whole section, so that they look like
the dissociated cells the model will be asked to place. Validation uses a contiguous spatial block of
each section, never seen in training (a random per-cell split would leak each cell's neighbours); the
block is stored with the model so that diagnostics after :meth:`~spatialedm.SpatialEDM.load` score
the same held-out cells.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from scipy.spatial import cKDTree
from torch.utils.data import DataLoader, Dataset

from ._augmentation import count_views
from ._config import SetConfig
from ._constants import MASK_KEY, REGISTRY_KEYS
from .geometry import unit_rms


def normalize_sections(coords: np.ndarray, sections: np.ndarray) -> np.ndarray:
    """Centre each section and scale it to unit per-axis RMS (:func:`~spatialedm.geometry.unit_rms`).

    Parameters
    ----------
    coords
        ``(n, d)`` coordinates.
    sections
        Integer section code per cell.

    Returns
    -------
    Normalised ``float32`` coordinates.
    """
    out = np.empty_like(coords, dtype=np.float32)
    for s in np.unique(sections):
        idx = sections == s
        out[idx] = unit_rms(coords[idx])
    return out


def spatial_block_split(
    coords: np.ndarray, sections: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Mark one contiguous block per section (a random centre and its nearest cells) as validation.

    Parameters
    ----------
    coords
        ``(n, d)`` coordinates.
    sections
        Integer section code per cell.
    fraction
        Fraction of each section in its block.
    rng
        Random generator.

    Returns
    -------
    Boolean array, ``True`` for validation cells.
    """
    val = np.zeros(len(coords), dtype=bool)
    if fraction <= 0:
        return val
    for s in np.unique(sections):
        idx = np.flatnonzero(sections == s)
        k = int(round(fraction * len(idx)))
        if k < 2 or len(idx) - k < 2:
            continue
        centre = coords[rng.choice(idx)]
        _, nn = cKDTree(coords[idx]).query(centre, k=k)
        val[idx[np.atleast_1d(nn)]] = True
    return val


class SetSampler:
    """Draws sets of cells (indices) from pools of cells, one pool per section.

    Parameters
    ----------
    coords
        ``(n, d)`` per-section normalised coordinates.
    sections
        Integer section code per cell.
    pool
        Boolean mask of the cells that may be drawn.
    config
        Set sizes and the local/global mix.
    """

    def __init__(self, coords: np.ndarray, sections: np.ndarray, pool: np.ndarray, config: SetConfig):
        self.config = config
        self.pools = []
        for s in np.unique(sections[pool]):
            idx = np.flatnonzero(pool & (sections == s))
            if len(idx) >= 2:
                self.pools.append((idx, cKDTree(coords[idx])))
        if not self.pools:
            raise ValueError("No section has at least 2 cells to draw training sets from.")
        self.coords = coords
        sizes = np.array([len(p[0]) for p in self.pools], dtype=float)
        self.section_p = sizes / sizes.sum()

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Return the indices of one set."""
        idx, tree = self.pools[rng.choice(len(self.pools), p=self.section_p)]
        cfg = self.config
        n = int(rng.integers(cfg.min_set_size, cfg.max_set_size + 1))
        n = max(2, min(n, len(idx)))
        if rng.random() < cfg.local_fraction:
            centre = self.coords[idx[rng.integers(len(idx))]]
            _, nn = tree.query(centre, k=n)
            return idx[np.atleast_1d(nn)]
        return rng.choice(idx, size=n, replace=False)


class SetDataset(Dataset):
    """Map-style dataset of random sets; item ``i`` is a set drawn by :class:`SetSampler`.

    Parameters
    ----------
    expression
        ``(n, G)`` preprocessed expression.
    coords
        ``(n, d)`` per-section normalised coordinates.
    sampler
        The set sampler.
    n_sets
        Length of the dataset (sets per epoch).
    seed
        Seed of the set draws.
    fixed
        Draw the sets once and serve the same ones every epoch (validation).
    views
        Re-measured copies of ``expression`` (:func:`~spatialedm._augmentation.count_views`): each set
        reads ``expression`` or one copy, each equally likely.
    """

    def __init__(
        self,
        expression: np.ndarray,
        coords: np.ndarray,
        sampler: SetSampler,
        n_sets: int,
        seed: int,
        fixed: bool = False,
        views: list[np.ndarray] | None = None,
    ):
        self.expression = expression
        self.views = [expression, *(views or [])]
        self.coords = coords
        self.sampler = sampler
        self.n_sets = n_sets
        self.seed = seed
        self._rng: np.random.Generator | None = None
        fixed_rng = np.random.default_rng(seed)
        self.fixed_sets = [sampler.draw(fixed_rng) for _ in range(n_sets)] if fixed else None

    @property
    def rng(self) -> np.random.Generator:
        """Generator of the training draws, created in the process that uses it.

        Under DDP every rank holds a copy of the dataset; seeding by rank makes the ranks draw
        different sets instead of the same ones.
        """
        if self._rng is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
            self._rng = np.random.default_rng(self.seed if rank == 0 else [self.seed, rank])
        return self._rng

    def __len__(self) -> int:
        return self.n_sets

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if self.fixed_sets is not None:  # validation reads the reference as it was measured
            idx, expression = self.fixed_sets[i], self.expression
        else:
            idx = self.sampler.draw(self.rng)
            expression = (
                self.views[self.rng.integers(len(self.views))] if len(self.views) > 1 else self.expression
            )
        c = unit_rms(self.coords[idx])
        return {REGISTRY_KEYS.X_KEY: expression[idx], REGISTRY_KEYS.SPATIAL_KEY: c.astype(np.float32)}


def collate_sets(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad sets to the largest in the batch and add a boolean ``mask`` of real cells.

    Parameters
    ----------
    items
        Sets from :class:`SetDataset`.

    Returns
    -------
    Batched tensors ``X`` ``(B, N, G)``, ``spatial`` ``(B, N, d)`` and ``mask`` ``(B, N)``.
    """
    n_max = max(len(it[REGISTRY_KEYS.X_KEY]) for it in items)
    out = {}
    for key in (REGISTRY_KEYS.X_KEY, REGISTRY_KEYS.SPATIAL_KEY):
        first = items[0][key]
        buf = np.zeros((len(items), n_max, first.shape[1]), dtype=np.float32)
        for b, it in enumerate(items):
            buf[b, : len(it[key])] = it[key]
        out[key] = torch.from_numpy(buf)
    mask = np.zeros((len(items), n_max), dtype=bool)
    for b, it in enumerate(items):
        mask[b, : len(it[REGISTRY_KEYS.X_KEY])] = True
    out[MASK_KEY] = torch.from_numpy(mask)
    return out


class SetDataSplitter(pl.LightningDataModule):
    """Serves training sets and fixed validation sets from a spatially held-out block of each section.

    The counterpart of scvi-tools' :class:`~scvi.dataloaders.DataSplitter` for a model trained on sets
    of cells: it reads the registered expression (through the model's fitted preprocessor),
    coordinates and sections, holds out one contiguous block per section (or the cells given as
    ``validation_indices``) and draws random sets from the rest.

    Parameters
    ----------
    adata_manager
        The model's :class:`~scvi.data.AnnDataManager`.
    preprocessor
        The model's fitted :class:`~spatialedm._preprocessing.Preprocessor`.
    config
        Set configuration.
    seed
        Seed of the split and of the set draws.
    validation_indices
        Cells to hold out instead of drawing a new block (e.g. the block stored with a loaded model).
    """

    def __init__(
        self,
        adata_manager,
        preprocessor,
        config: SetConfig,
        seed: int = 0,
        validation_indices: np.ndarray | None = None,
    ):
        super().__init__()
        self.config = config
        setup = adata_manager.registry["setup_args"]
        view = preprocessor.view(
            adata_manager.adata, layer=setup.get("layer"), batch_key=setup.get("batch_key"), what="reference"
        )
        expression = view.all_rows()
        coords = np.asarray(adata_manager.get_from_registry(REGISTRY_KEYS.SPATIAL_KEY), dtype=np.float64)
        sections = np.asarray(adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        rng = np.random.default_rng(seed)
        self.coords = normalize_sections(coords, sections)
        if validation_indices is None:
            self.val_mask = spatial_block_split(self.coords, sections, config.validation_fraction, rng)
        else:
            self.val_mask = np.zeros(len(coords), dtype=bool)
            self.val_mask[np.asarray(validation_indices, dtype=np.int64)] = True
        self.train_idx = np.flatnonzero(~self.val_mask)
        self.val_idx = np.flatnonzero(self.val_mask)
        self.n_train, self.n_val = len(self.train_idx), len(self.val_idx)
        views = None
        if config.count_views > 0 and view.is_counts:
            views = count_views(
                view,
                config.count_views,
                np.random.default_rng([seed, 3]),
                min_depth=config.min_depth,
                capture_sd=config.capture_sd,
            )
        train_sampler = SetSampler(self.coords, sections, ~self.val_mask, config)
        self.train_dataset = SetDataset(
            expression, self.coords, train_sampler, config.n_sets_per_epoch, seed + 1, views=views
        )
        self.val_dataset = None
        if self.n_val >= 2 and config.n_validation_sets > 0:
            val_sampler = SetSampler(self.coords, sections, self.val_mask, config)
            self.val_dataset = SetDataset(
                expression, self.coords, val_sampler, config.n_validation_sets, seed + 2, fixed=True
            )

    def train_dataloader(self) -> DataLoader:
        """Training sets; a new random draw each epoch."""
        return DataLoader(
            self.train_dataset, batch_size=self.config.sets_per_batch, shuffle=False, collate_fn=collate_sets
        )

    def val_dataloader(self) -> DataLoader | list:
        """Fixed validation sets from the held-out spatial blocks (empty when there are none)."""
        if self.val_dataset is None:
            return []
        return DataLoader(self.val_dataset, batch_size=self.config.sets_per_batch, collate_fn=collate_sets)
