"""Constants shared by several modules: registry keys, batch keys, training stages and output keys."""

from __future__ import annotations

from typing import NamedTuple


class _REGISTRY_KEYS_NT(NamedTuple):
    X_KEY: str = "X"
    SPATIAL_KEY: str = "spatial"
    BATCH_KEY: str = "batch"
    LABELS_KEY: str = "labels"


REGISTRY_KEYS = _REGISTRY_KEYS_NT()

#: Key of the batch entry holding each set's padding mask (written by the data splitter, read by the
#: module's losses and the training plan).
MASK_KEY = "mask"
#: Training stages, in order: spatial-contrastive encoder, generator, refiner.
STAGES = ("encoder", "generator", "refiner")

#: Key of ``obsm`` that :meth:`~spatialedm.SpatialEDM.get_latent_coordinates` writes by default.
DEFAULT_KEY_ADDED = "X_spatialedm"
#: Key of ``obs`` with each cell's uncertainty (see ``get_latent_coordinates(uncertainty=...)``).
UNCERTAINTY_KEY = "spatialedm_uncertainty"
