"""spatialedm: reconstruct the intrinsic spatial layout of cells from expression."""

from importlib.metadata import PackageNotFoundError, version

from . import baselines, datasets, diagnostics, edm, geometry, metrics, pl, transfer
from ._config import ModelConfig, SetConfig
from ._legacy import convert_legacy_model
from ._model import SpatialEDM
from ._preprocessing import Preprocessor

try:
    __version__ = version("spatialedm")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "ModelConfig",
    "Preprocessor",
    "SetConfig",
    "SpatialEDM",
    "baselines",
    "convert_legacy_model",
    "datasets",
    "diagnostics",
    "edm",
    "geometry",
    "metrics",
    "pl",
    "transfer",
]
