"""Saving and loading models without executable content.

A saved model is three files in one folder, each name starting with an optional ``prefix``:

- ``model.json``: what the model is (class, format version, package version, the AnnData registry,
  configuration, preprocessing, training history) as plain JSON, and the SHA-256 of the weights file;
- ``weights.pt``: the network weights, a flat mapping of names to tensors, read back with
  ``torch.load(weights_only=True)``, which refuses any other object;
- ``adata.h5ad`` (only with ``save_anndata=True``): the reference AnnData.

Loading checks the checksum, that every weight is finite and that the tensors fit the network, before
anything is built. Files written by spatialedm 0.1.0 (a pickled ``model.pt``, which can run code when
unpickled) are refused unless converted once, explicitly, with
:func:`~spatialedm.convert_legacy_model` (``_legacy.py``). Fields added to the format later (the cell
spacing, the tissue proportions) are measured on load when missing.

This module never imports the model class: :meth:`~spatialedm.SpatialEDM.load` passes it in, which keeps
the model's module (which imports this one) out of an import cycle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi.model._utils import parse_device_args

from ._genes import require_all_genes
from ._proportions import tissue_proportions
from ._spacing import tissue_spacing

logger = logging.getLogger(__name__)

FORMAT = "spatialedm-model"
FORMAT_VERSION = 1
METADATA_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
ADATA_FILE = "adata.h5ad"
LEGACY_FILE = "model.pt"
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]*$")
#: Model attributes that are not saved: the training split's complement and run bookkeeping.
_SKIPPED = {"train_indices_", "test_indices_", "init_params_", "registry_"}


class ModelFileError(ValueError):
    """A model folder that cannot be loaded safely: missing, corrupted, tampered with or of an old format."""


def _package_version() -> str:
    try:
        return version("spatialedm")
    except PackageNotFoundError:
        return "0.0.0"


def check_prefix(prefix: str | None) -> str:
    """Return ``prefix`` (``""`` for ``None``) after checking that it names files, not paths.

    Parameters
    ----------
    prefix
        File-name prefix given to :meth:`~spatialedm.SpatialEDM.save` or ``load``.

    Returns
    -------
    The prefix.

    Raises
    ------
    ValueError
        When it contains a path separator, ``..`` or characters outside letters, digits, ``_ . -``.

    Examples
    --------
    >>> check_prefix("run1_")
    'run1_'
    """
    prefix = "" if prefix is None else str(prefix)
    if ".." in prefix or not _PREFIX.match(prefix):
        raise ValueError(
            f"prefix {prefix!r} must be a plain file-name prefix (letters, digits, '_', '.', '-'; no path "
            "separators or '..'): it may not point outside the model folder."
        )
    return prefix


def _to_json(obj):
    """Plain JSON for the model's attributes: arrays and data frames are tagged so they round-trip."""
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": _to_json(obj.tolist()), "dtype": str(obj.dtype)}
    if isinstance(obj, pd.DataFrame):
        split = obj.to_dict(orient="split")
        return {"__dataframe__": _to_json({k: split[k] for k in ("index", "columns", "data")})}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"Cannot save an attribute of type {type(obj).__name__} as JSON.")


def _from_json(obj):
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__ndarray__" in obj:
        dtype = obj.get("dtype", "float64")
        return np.array(obj["__ndarray__"], dtype=object if dtype == "object" else np.dtype(dtype))
    if "__dataframe__" in obj:
        d = obj["__dataframe__"]
        return pd.DataFrame(d["data"], index=d["index"], columns=d["columns"])
    return {k: _from_json(v) for k, v in obj.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, write) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_model(
    model, dir_path, *, prefix: str | None = None, overwrite: bool = False, save_anndata: bool = False
):
    """Write ``model`` into ``dir_path`` as JSON metadata and a tensors-only weights file.

    Parameters
    ----------
    model
        A :class:`~spatialedm.SpatialEDM`.
    dir_path
        Folder (created if needed). Other files in it are never touched.
    prefix
        File-name prefix (see :func:`check_prefix`).
    overwrite
        Replace a model saved there before under the same prefix (only its files).
    save_anndata
        Also write the reference AnnData.
    """
    prefix = check_prefix(prefix)
    folder = Path(dir_path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{dir_path} exists and is not a folder.")
    names = {
        "metadata": prefix + METADATA_FILE,
        "weights": prefix + WEIGHTS_FILE,
        "adata": prefix + ADATA_FILE,
    }
    existing = [n for n in names.values() if (folder / n).exists()]
    if existing and not overwrite:
        raise ValueError(
            f"{dir_path} already holds a saved model ({', '.join(existing)}); pass overwrite=True to replace it "
            "(only these files are replaced)."
        )
    if save_anndata and model.adata is None:
        raise ValueError("save_anndata=True, but the model has no reference AnnData attached.")
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
    attributes = {k: v for k, v in model._get_user_attributes() if k.endswith("_") and k not in _SKIPPED}
    _write_atomic(folder / names["weights"], lambda tmp: torch.save(state, tmp))
    if save_anndata:
        _write_atomic(folder / names["adata"], lambda tmp: model.adata.write_h5ad(tmp))
    elif (folder / names["adata"]).exists():
        os.remove(folder / names["adata"])  # a stale reference from an earlier save would be attached on load
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spatialedm_version": _package_version(),
        "class": type(model).__name__,
        "weights_sha256": _sha256(folder / names["weights"]),
        "registry": _to_json(model.registry_),
        "attributes": _to_json(attributes),
    }
    # The metadata goes last: a crash before it leaves the previous model.json, whose checksum then
    # refuses the half-written pair instead of loading mismatched weights.
    text = json.dumps(metadata, indent=1)
    _write_atomic(folder / names["metadata"], lambda tmp: Path(tmp).write_text(text))
    logger.debug("Saved the model to %s", folder)


def _legacy_refusal(path: Path) -> ModelFileError:
    return ModelFileError(
        f"{path} is a model saved by spatialedm 0.1.0 in a pickle-based format, which can run code when it is "
        "opened, so it is not loaded. If you trust where it came from, convert it once with "
        f"spatialedm.convert_legacy_model({str(path.parent)!r}, trust_pickle=True) and load the converted "
        "folder; otherwise retrain the model (spatialedm fit)."
    )


def read_checked(dir_path, prefix: str | None = None) -> tuple[dict, dict[str, torch.Tensor], Path | None]:
    """Read and check a saved model's metadata and weights (no model is built).

    Parameters
    ----------
    dir_path
        Folder written by :func:`save_model`.
    prefix
        File-name prefix.

    Returns
    -------
    ``(metadata, state_dict, adata_path)``; ``adata_path`` is ``None`` when no AnnData was saved.

    Raises
    ------
    ModelFileError
        When files are missing, of an older format, corrupted, tampered with or hold non-finite weights.
    """
    prefix = check_prefix(prefix)
    folder = Path(dir_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"No saved model folder at {dir_path}.")
    meta_path = folder / (prefix + METADATA_FILE)
    if not meta_path.is_file():
        if (folder / (prefix + LEGACY_FILE)).is_file():
            raise _legacy_refusal(folder / (prefix + LEGACY_FILE))
        raise ModelFileError(f"{dir_path} holds no saved model ({meta_path.name} not found).")
    try:
        metadata = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{meta_path} is not valid JSON ({err}); the model file is corrupted.") from err
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f"{meta_path} is not a spatialedm model description.")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{meta_path} was written by spatialedm {metadata.get('spatialedm_version')} in a newer format "
            f"({metadata.get('format_version')}); upgrade spatialedm to load it."
        )
    weights = folder / (prefix + WEIGHTS_FILE)
    if not weights.is_file():
        raise ModelFileError(f"{weights} is missing.")
    if _sha256(weights) != metadata.get("weights_sha256"):
        raise ModelFileError(
            f"The checksum of {weights} does not match the one recorded in {meta_path.name}: the weights were "
            "corrupted or modified after saving. Re-save the model or retrain it."
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelFileError(
            f"{weights} holds something other than plain tensors and is refused ({type(err).__name__})."
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{weights} is not a mapping of names to tensors.")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelFileError(
            f"{weights} holds non-finite weights (NaN or infinity) in {bad[:3]}; the model cannot be used. "
            "Retrain it."
        )
    adata_path = folder / (prefix + ADATA_FILE)
    return metadata, state, adata_path if adata_path.is_file() else None


def load_model(
    cls,
    dir_path,
    *,
    adata: AnnData | None = None,
    prefix: str | None = None,
    accelerator="auto",
    device="auto",
):
    """Build a model of class ``cls`` from a folder written by :func:`save_model`.

    Parameters
    ----------
    cls
        The model class (:class:`~spatialedm.SpatialEDM`).
    dir_path
        The folder.
    adata
        Reference AnnData to attach: it must hold the genes the model was set up on, in that order (more
        than the model's own genes when it kept only the most variable ones), and the registered
        coordinates. An AnnData that lacks any of the model's genes is refused (see
        :func:`~spatialedm._genes.require_all_genes`); any other AnnData (e.g. a query holding all of them)
        is not attached.
    prefix
        File-name prefix.
    accelerator, device
        Where to put the model (as in scvi-tools).

    Returns
    -------
    The loaded model, in evaluation mode.
    """
    metadata, state, adata_path = read_checked(dir_path, prefix)
    if metadata.get("class") != cls.__name__:
        raise ModelFileError(f"{dir_path} holds a {metadata.get('class')} model, not a {cls.__name__}.")
    registry = _from_json(metadata["registry"])
    attributes = _from_json(metadata["attributes"])
    genes = attributes["preprocessor_"]["genes"]
    setup = registry["setup_args"]
    if adata is None and adata_path is not None:
        import anndata as ad

        adata = ad.read_h5ad(adata_path)
    passed = adata
    if adata is not None:
        # the AnnData given to load stands for the training reference: a partial one would silently
        # feed prior="knn", the transfer functions and measurements on load with other cells or genes
        require_all_genes(adata.var_names, genes, what="AnnData passed to load")
        # The reference holds the genes it was registered with, which are more than the model's own
        # when the model kept only the most variable ones (``n_top_genes``).
        is_reference = (
            list(map(str, adata.var_names)) == _registered_genes(registry, genes)
            and setup["spatial_key"] in adata.obsm
        )
        if is_reference:
            cls.setup_anndata(adata, source_registry=registry, **setup)
        else:
            logger.info(
                "The AnnData is not the model's reference; loaded without one (pass it to get_latent_coordinates)."
            )
            adata = None
    config = dict(attributes["model_config_"])
    config.setdefault("n_pcs", None)  # saved before the option existed: the encoder read the genes
    config.setdefault("stretch_generator", False)  # saved before it existed: the refiner was trained without
    model = cls(adata, registry=registry, preprocessor=attributes["preprocessor_"], **config)
    for key, value in attributes.items():
        setattr(model, key, value)
    if "spacing" not in state:  # saved before the model measured its reference's cell spacing
        state["spacing"] = _legacy_spacing(passed, setup)
    if "proportions" not in state:  # saved before the model measured its reference's proportions
        state["proportions"] = _legacy_proportions(passed, setup, model.module.proportions.numel())
    try:
        model.module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFileError(
            f"The weights in {dir_path} do not fit the network described in its metadata: {err}"
        ) from err
    _, _, torch_device = parse_device_args(accelerator=accelerator, devices=device, return_device="torch")
    model.to_device(torch_device)
    model.module.eval()
    return model


def _registered_genes(registry: dict, default: list[str]) -> list[str]:
    """The genes of the AnnData the model was set up on (``default``, the model's genes, if not recorded)."""
    names = registry.get("field_registries", {}).get("X", {}).get("state_registry", {}).get("column_names")
    return list(map(str, names)) if names is not None else list(map(str, default))


def _reference_coordinates(adata, setup: dict):
    """``(coords, sections)`` of the AnnData passed when it carries the setup's keys, else ``None``."""
    key, batch_key = setup.get("spatial_key"), setup.get("batch_key")
    if adata is None or key not in adata.obsm or (batch_key is not None and batch_key not in adata.obs):
        return None
    sections = None if batch_key is None else adata.obs[batch_key].to_numpy()
    return np.asarray(adata.obsm[key], dtype=np.float64), sections


def _legacy_spacing(adata, setup: dict):
    """The cell spacing of a model saved without one: measured on the AnnData passed, else 0 (no relaxation)."""
    reference = _reference_coordinates(adata, setup)
    if reference is not None:
        return torch.tensor(tissue_spacing(*reference))
    logger.info(
        "This model was saved without its reference's cell spacing; load it with its reference AnnData "
        "to measure it, or layouts are returned without relaxation."
    )
    return torch.tensor(0.0)


def _legacy_proportions(adata, setup: dict, n_spatial: int):
    """The tissue proportions of a model saved without them: measured on the AnnData passed, else zeros."""
    reference = _reference_coordinates(adata, setup)
    if reference is not None:
        return torch.from_numpy(tissue_proportions(*reference)).float()
    logger.info(
        "This model was saved without its reference's tissue proportions; load it with its reference "
        "AnnData to measure them (needed for shape_weight > 0)."
    )
    return torch.zeros(n_spatial)
