"""spatialedm: reconstruct the intrinsic spatial layout of cells from expression."""

from importlib.metadata import PackageNotFoundError, version

from . import baselines, datasets, edm, geometry, metrics, pl, tasks
from ._config import ModelConfig, SetConfig
from ._model import SpatialEDM

try:
    __version__ = version("spatialedm")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "ModelConfig",
    "SetConfig",
    "SpatialEDM",
    "baselines",
    "datasets",
    "edm",
    "geometry",
    "metrics",
    "pl",
    "tasks",
]
