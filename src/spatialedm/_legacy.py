"""Conversion of models saved by spatialedm 0.1.0 (a pickled ``model.pt``) to the safe format.

The old format is a Python pickle, which can run code when it is opened, so the safe format's loader
(``_persistence.py``) refuses it. This module opens it only when the user says they trust the file,
rebuilds the model with the current class and writes it in the safe format once.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ._model import SpatialEDM
from ._persistence import (
    LEGACY_FILE,
    ModelFileError,
    _legacy_proportions,
    _legacy_spacing,
    check_prefix,
    save_model,
)


def convert_legacy_model(
    dir_path, out_path=None, *, trust_pickle: bool = False, prefix: str | None = None
) -> Path:
    """Convert a model folder saved by spatialedm 0.1.0 (pickled ``model.pt``) to the current format.

    The old format is a Python pickle: opening it can run arbitrary code. Convert only files whose origin
    you trust, once; the converted folder then loads safely with :meth:`~spatialedm.SpatialEDM.load`.

    Parameters
    ----------
    dir_path
        The old model folder.
    out_path
        Folder for the converted model (default: ``dir_path`` itself; ``model.pt`` is left in place).
    trust_pickle
        Must be ``True``: you confirm that you trust the file.
    prefix
        File-name prefix of the old files.

    Returns
    -------
    The folder holding the converted model.

    Examples
    --------
    Not run here (it needs a folder saved by spatialedm 0.1.0):

    >>> convert_legacy_model("old_model", "model_v2", trust_pickle=True)  # doctest: +SKIP
    """
    if not trust_pickle:
        raise ValueError(
            "Converting opens a pickle, which can run code: pass trust_pickle=True only for a file you trust."
        )
    prefix = check_prefix(prefix)
    path = Path(dir_path) / (prefix + LEGACY_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"No spatialedm 0.1.0 model file at {path}.")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    attributes = dict(saved["attr_dict"])
    config = dict(attributes.pop("model_config_"))
    for option, default in (
        ("refiner_target", "residual"),
        ("refiner_loss", "plain"),
        ("sigma_data_scale", 1.0),
    ):
        if config.pop(option, default) != default:
            raise ModelFileError(
                f"The model was trained with the study option {option}={saved['attr_dict']['model_config_'][option]!r}, "
                "which this version no longer has; retrain it."
            )
    config.setdefault("n_pcs", None)  # 0.1.0's encoder read the genes
    config.setdefault("stretch_generator", False)
    scaler = attributes.pop("scaler_state_")
    attributes["preprocessor_"] = {
        "genes": list(attributes.pop("var_names_")),
        "is_counts": bool(scaler["is_counts"]),
        "target_sum": 1e4 if scaler["is_counts"] else None,  # the fixed target of 0.1.0
        "scale": scaler["scale"],
        "per_gene": bool(scaler.get("per_gene", True)),
    }
    registry = attributes.pop("registry_")
    attributes.pop("init_params_", None)
    model = SpatialEDM(None, registry=registry, preprocessor=attributes["preprocessor_"], **config)
    for key, value in attributes.items():
        setattr(model, key, value)
    state = {k: v for k, v in saved["model_state_dict"].items() if k != "pyro_param_store"}
    state.setdefault("spacing", _legacy_spacing(None, {}))
    state.setdefault("proportions", _legacy_proportions(None, {}, model.module.proportions.numel()))
    model.module.load_state_dict(state, strict=True)
    out = Path(out_path) if out_path is not None else Path(dir_path)
    save_model(model, out, prefix=prefix, overwrite=True)
    return out
