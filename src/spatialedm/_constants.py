"""Registry keys for the AnnData fields that :class:`~spatialedm.SpatialEDM` registers."""

from __future__ import annotations

from typing import NamedTuple


class _REGISTRY_KEYS_NT(NamedTuple):
    X_KEY: str = "X"
    SPATIAL_KEY: str = "spatial"
    BATCH_KEY: str = "batch"
    LABELS_KEY: str = "labels"


REGISTRY_KEYS = _REGISTRY_KEYS_NT()

#: Key of ``obsm`` that :meth:`~spatialedm.SpatialEDM.get_latent_coordinates` writes by default.
DEFAULT_KEY_ADDED = "X_spatialedm"
#: Key of ``obs`` with each cell's uncertainty (see ``get_latent_coordinates(uncertainty=...)``).
UNCERTAINTY_KEY = "spatialedm_uncertainty"
