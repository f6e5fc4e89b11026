"""SpatialEDM: the user-facing scvi-tools model."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from lightning.pytorch.strategies import DDPStrategy
from scvi import settings
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField, ObsmField
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner
from scvi.utils import setup_anndata_dsp

from ._config import ModelConfig, SetConfig
from ._constants import DEFAULT_KEY_ADDED, REGISTRY_KEYS
from ._diagnostics import DiagnosticsMixin
from ._module import SpatialEDMModule
from ._preprocessing import ExpressionScaler, looks_like_counts
from ._query import QueryExpression
from ._sets import SetDataModule
from ._trainingplan import SpatialEDMTrainingPlan, stage_epochs
from ._transfer import TransferMixin
from ._validation import validate_expression, validate_spatial
from .geometry import align_numpy, generalised_procrustes, similarity_apply, unit_rms

logger = logging.getLogger(__name__)

#: Cells shared by all subsets of a stitched layout (they fix the common frame).
N_ANCHORS = 128
#: Subsets predicted in one forward pass.
SETS_PER_PASS = 16
#: Default training epochs (of 256 sets each): about 3-6 minutes on 2 CPU cores.
DEFAULT_MAX_EPOCHS = 30


class SpatialEDM(TransferMixin, DiagnosticsMixin, BaseModelClass):
    """Reconstruct the relative spatial layout of cells from expression.

    Learns, from spatial transcriptomics sections registered with :meth:`setup_anndata`, how
    expression maps to intrinsic geometry (neighbourhoods, relative distances, tissue shape), and
    places cells that have no coordinates (scRNA-seq, or a section whose coordinates are hidden).
    The pipeline is expression encoder → set-attention context → generator (a direct layout) →
    EDM refiner that denoises the residual around the generator's layout in a few Heun steps.

    Parameters
    ----------
    adata
        Reference AnnData registered with :meth:`setup_anndata`.
    config
        Network and loss settings; fields may also be given as keyword arguments.
    registry
        Used by :meth:`load` when no AnnData is given.
    **model_kwargs
        Fields of :class:`~spatialedm.ModelConfig`, e.g. ``dim=64``.

    Examples
    --------
    >>> import spatialedm as sem
    >>> ref = sem.datasets.osmfish_cortex()
    >>> sem.SpatialEDM.setup_anndata(ref, layer="counts", spatial_key="spatial")
    >>> model = sem.SpatialEDM(ref)
    >>> model.train(max_epochs=3)  # doctest: +SKIP
    >>> coords = model.get_latent_coordinates(sem.datasets.osmfish_scrna())  # doctest: +SKIP
    """

    _training_plan_cls = SpatialEDMTrainingPlan

    def __init__(
        self,
        adata: AnnData | None = None,
        config: ModelConfig | None = None,
        registry: dict | None = None,
        **model_kwargs,
    ):
        super().__init__(adata, registry=registry)
        model_config = ModelConfig.from_kwargs(config, **model_kwargs)
        self.model_config_ = model_config.to_dict()
        n_genes = int(self.summary_stats["n_vars"])
        n_spatial = int(self.summary_stats["n_spatial"])
        if adata is not None:
            self.var_names_ = list(map(str, adata.var_names))
            X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
            declared = self.registry_["setup_args"].get("expression", "auto")
            is_counts = looks_like_counts(X) if declared == "auto" else declared == "counts"
            self.scaler_state_ = ExpressionScaler(is_counts=is_counts).state_dict()
        self.module = SpatialEDMModule(n_genes, n_spatial, model_config)
        self.set_config_ = SetConfig().to_dict()
        self._model_summary_string = (
            f"SpatialEDM model: {n_genes} genes, {n_spatial}-D layout, set width {model_config.dim}, "
            f"ISAB blocks context/generator/denoiser {model_config.n_context_blocks}/"
            f"{model_config.n_generator_blocks}/{model_config.n_denoiser_blocks}."
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ setup
    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        spatial_key: str = "spatial",
        batch_key: str | None = None,
        labels_key: str | None = None,
        expression: str = "auto",
        **kwargs,
    ) -> None:
        """Register expression, coordinates and sections of a reference AnnData.

        Expression may be raw counts (normalised to library size and log-transformed inside the
        model) or log-normalised values, dense or sparse. Like every scvi-tools model, this adds
        ``uns["_scvi_uuid"]``, ``uns["_scvi_manager_uuid"]``, ``obs["_scvi_batch"]`` and
        ``obs["_scvi_labels"]`` to ``adata``; nothing else is changed.

        Parameters
        ----------
        %(param_adata)s
        %(param_layer)s
        spatial_key
            Key of ``adata.obsm`` with 2-D or 3-D coordinates.
        %(param_batch_key)s
            Sections: each is centred per gene and normalised in space on its own.
        %(param_labels_key)s
        expression
            ``"counts"`` (raw counts: checked to be non-negative integers), ``"log"`` (log-normalised,
            used as it is) or ``"auto"`` (counts when every value is a non-negative integer).

        Examples
        --------
        >>> import spatialedm as sem
        >>> adata = sem.datasets.synthetic_tissue(n_cells=200, n_sections=2)
        >>> sem.SpatialEDM.setup_anndata(adata, spatial_key="spatial", batch_key="section")
        """
        if expression not in ("auto", "counts", "log"):
            raise ValueError(f"expression must be 'auto', 'counts' or 'log', got {expression!r}.")
        validate_spatial(adata, spatial_key)
        validate_expression(adata, layer, expression)
        if batch_key is not None and batch_key not in adata.obs:
            raise KeyError(f"batch_key {batch_key!r} is not a column of adata.obs {list(adata.obs.columns)}.")
        if labels_key is not None and labels_key not in adata.obs:
            raise KeyError(
                f"labels_key {labels_key!r} is not a column of adata.obs {list(adata.obs.columns)}."
            )
        setup_method_args = cls._get_setup_method_args(**locals())
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            ObsmField(REGISTRY_KEYS.SPATIAL_KEY, spatial_key),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    # ------------------------------------------------------------------ training
    def _reference_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        coords = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.SPATIAL_KEY), dtype=np.float64)
        sections = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        scaler = ExpressionScaler(
            is_counts=self.scaler_state_["is_counts"], per_gene=self.model_config_["scale_genes"]
        )
        expression = scaler.fit_transform(X, sections)
        self.scaler_state_ = scaler.state_dict()
        return expression, coords, sections

    def train(
        self,
        max_epochs: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the encoder, then the generator, then the refiner.

        Parameters
        ----------
        max_epochs
            Total epochs over the three stages (default :data:`DEFAULT_MAX_EPOCHS`). An epoch is
            ``n_sets_per_epoch`` random sets, not a pass over the cells, so its cost does not grow
            with the size of the reference.
        accelerator
            Lightning accelerator: ``"auto"`` uses a GPU when one is there, else the CPU.
        devices
            Lightning devices, e.g. ``2`` with ``strategy="ddp"``.
        datasplitter_kwargs
            Fields of :class:`~spatialedm.SetConfig` (set sizes, local/global mix, validation block).
        plan_kwargs
            ``lr``, ``weight_decay`` and ``stage_fractions`` (encoder, generator, refiner shares of
            the epochs; default ``(0.2, 0.5, 0.3)``).
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (a Lightning ``Trainer``), e.g. ``strategy="ddp"``
            (several devices; see docs/notes/multi-gpu.md) or ``precision="bf16-mixed"``.

        Examples
        --------
        >>> model.train(max_epochs=30, accelerator="cpu")  # doctest: +SKIP
        >>> model.history["train_loss_generator"].tail()  # doctest: +SKIP
        """
        set_config = SetConfig.from_kwargs(SetConfig(**self.set_config_), **(datasplitter_kwargs or {}))
        self.set_config_ = set_config.to_dict()
        plan_kwargs = dict(plan_kwargs or {})
        fractions = tuple(plan_kwargs.pop("stage_fractions", (0.2, 0.5, 0.3)))
        max_epochs = DEFAULT_MAX_EPOCHS if max_epochs is None else int(max_epochs)
        expression, coords, sections = self._reference_arrays()
        data_module = SetDataModule(expression, coords, sections, set_config, seed=settings.seed or 0)
        epochs = stage_epochs(max_epochs, fractions)
        plan = self._training_plan_cls(self.module, epochs, **plan_kwargs)
        if trainer_kwargs.get("strategy") in ("ddp", "ddp_spawn", "ddp_notebook"):
            # Each stage leaves the other stages' parameters without gradients; plain DDP would
            # stop at the first step waiting for their reduction.
            trainer_kwargs["strategy"] = DDPStrategy(
                find_unused_parameters=True,
                start_method={"ddp": "popen", "ddp_spawn": "spawn", "ddp_notebook": "fork"}[
                    trainer_kwargs["strategy"]
                ],
            )
        if data_module.val_dataset is not None:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        trainer_kwargs.setdefault("log_every_n_steps", 1)
        logger.info("Training stages (epochs): encoder %d, generator %d, refiner %d", *epochs)
        runner = TrainRunner(
            self,
            training_plan=plan,
            data_splitter=data_module,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        try:
            return runner()
        except (KeyboardInterrupt, SystemExit) as err:
            # Lightning turns Ctrl-C / a notebook's stop button into SystemExit(1) after a graceful
            # shutdown; keep what was learnt so far instead of losing the session's model.
            if isinstance(err, SystemExit) and err.code not in (1, None):
                raise
            self.module.eval()
            self.is_trained_ = True
            logger.warning(
                "Training interrupted after %d epoch(s) (stage %r); the model keeps the weights reached so far.",
                plan.current_epoch,
                plan.stage,
            )
            return None

    # ------------------------------------------------------------------ inference
    def _query(self, adata: AnnData | None) -> QueryExpression:
        registry = self.registry_["setup_args"]
        if self.scaler_state_["scale"] is None:  # untrained model: fit the gene scale on the reference now
            self._reference_arrays()
        if adata is None:
            adata = self.adata
        layer = registry.get("layer")
        if layer is not None and layer not in adata.layers:
            logger.info("Layer %r not in the query; reading adata.X.", layer)
            layer = None
        return QueryExpression(
            adata,
            pd.Index(self.var_names_),
            ExpressionScaler.from_state_dict(self.scaler_state_),
            layer=layer,
            batch_key=registry.get("batch_key"),
        )

    @torch.inference_mode()
    def get_latent_representation(
        self, adata: AnnData | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Per-cell expression embedding ``Z`` of the trained encoder.

        Parameters
        ----------
        adata
            Cells to embed (genes matched by name); the reference when ``None``.
        batch_size
            Cells per forward pass (default 4096).

        Returns
        -------
        ``(n_cells, n_latent)`` array.

        Examples
        --------
        >>> z = model.get_latent_representation(query)  # doctest: +SKIP
        """
        self._check_if_trained(warn=True)
        query = self._query(adata)
        self.module.eval()
        device = self.device
        batch_size = batch_size or 4096
        out = []
        for start in range(0, query.n_obs, batch_size):
            x = torch.from_numpy(query.rows(np.arange(start, min(start + batch_size, query.n_obs)))).to(
                device
            )
            out.append(self.module.encoder(x).cpu().numpy())
        return np.concatenate(out)

    @torch.inference_mode()
    def get_latent_coordinates(
        self,
        adata: AnnData | None = None,
        *,
        refine: bool = True,
        n_samples: int = 1,
        sigma_start: float | None = None,
        n_steps: int | None = None,
        key_added: str | None = DEFAULT_KEY_ADDED,
        batch_size: int | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Reconstruct the relative layout of cells from their expression.

        Runs the generator and, with ``refine=True``, the EDM refiner. A query larger than
        ``batch_size`` cells is split into overlapping random subsets that share
        :data:`N_ANCHORS` anchor cells; each subset is placed on its own and moved into one frame
        by generalised Procrustes on the anchors, so memory grows linearly with the cells.

        Parameters
        ----------
        adata
            Cells to place; genes are matched to the reference by name. The reference when ``None``.
        refine
            Run the diffusion refiner after the generator.
        n_samples
            With more than one, also draw this many stochastic refinements (the refiner started
            from noise at ``sigma_start`` around the generator, with fresh subsets) and write each cell's
            RMS distance from the returned layout to ``obs["spatialedm_uncertainty"]``, in units of the
            layout's per-axis RMS. The returned layout is always the deterministic one (the refiner
            started from the noise-free generator layout), which scores best.
        sigma_start
            Refiner's starting noise, in units of the residual's ``sigma_data`` (default from the
            model config); capped at the largest level trained on.
        n_steps
            Heun steps of the refiner (default from the model config).
        key_added
            ``obsm`` key written with the layout; ``None`` writes nothing.
        batch_size
            Cells per set (default: the largest training set size); larger queries are stitched.
        seed
            Seed of the noise and of the subsets, for reproducible layouts.

        Returns
        -------
        ``(n_cells, d)`` layout, centred with unit per-axis RMS (scale and orientation carry no meaning).

        Examples
        --------
        >>> coords = model.get_latent_coordinates(query, seed=0)  # doctest: +SKIP
        >>> import squidpy as sq  # doctest: +SKIP
        >>> sq.pl.spatial_scatter(
        ...     query, spatial_key="X_spatialedm", shape=None, color="cell_type"
        ... )  # doctest: +SKIP
        """
        self._check_if_trained(warn=True)
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        target = self.adata if adata is None else adata
        query = self._query(adata)
        set_size = int(batch_size or self.set_config_["max_set_size"])
        if set_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {set_size}.")
        gen = torch.Generator().manual_seed(
            int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, (1,)))
        )
        self.module.eval()
        layout = unit_rms(self._sample_layout(query, set_size, refine, sigma_start, n_steps, gen, False))
        spread = None
        if n_samples > 1:
            # Stochastic refinements (and fresh subsets) around the deterministic layout: their spread
            # is each cell's positional uncertainty, in units of the layout's per-axis RMS.
            draws = [
                align_numpy(
                    self._sample_layout(query, set_size, refine, sigma_start, n_steps, gen, True), layout
                )
                for _ in range(n_samples)
            ]
            spread = np.sqrt(np.mean([((d - layout) ** 2).sum(1) for d in draws], axis=0))
        if key_added is not None:
            target.obsm[key_added] = layout.astype(np.float32)
            if spread is not None:
                target.obs["spatialedm_uncertainty"] = spread.astype(np.float32)
        return layout

    def _predict_sets(
        self, query, subsets, refine, sigma_start, n_steps, gen, stochastic
    ) -> list[np.ndarray]:
        device = self.device
        out = []
        for start in range(0, len(subsets), SETS_PER_PASS):
            chunk = subsets[start : start + SETS_PER_PASS]
            n_max = max(len(s) for s in chunk)
            x = np.zeros((len(chunk), n_max, query.n_genes), dtype=np.float32)
            mask = np.zeros((len(chunk), n_max), dtype=bool)
            for b, s in enumerate(chunk):
                x[b, : len(s)] = query.rows(s)
                mask[b, : len(s)] = True
            v = self.module.sample(
                torch.from_numpy(x).to(device),
                torch.from_numpy(mask).to(device),
                refine=refine,
                sigma_start=sigma_start,
                n_steps=n_steps,
                generator=gen,
                stochastic=stochastic,
            )
            v = v.float().cpu().numpy()
            out.extend(v[b, : len(s)].astype(np.float64) for b, s in enumerate(chunk))
        return out

    def _sample_layout(self, query, set_size, refine, sigma_start, n_steps, gen, stochastic) -> np.ndarray:
        n = query.n_obs
        if n <= set_size:
            return self._predict_sets(query, [np.arange(n)], refine, sigma_start, n_steps, gen, stochastic)[0]
        perm = torch.randperm(n, generator=gen).numpy()
        n_anchor = min(N_ANCHORS, set_size // 2)
        anchors, rest = perm[:n_anchor], perm[n_anchor:]
        step = set_size - n_anchor
        n_sub = int(np.ceil(len(rest) / step))
        # Spread the cells evenly over the subsets so the last one is not tiny.
        parts = np.array_split(rest, n_sub)
        subsets = [np.concatenate([anchors, p]) for p in parts]
        preds = self._predict_sets(query, subsets, refine, sigma_start, n_steps, gen, stochastic)
        frame = generalised_procrustes([p[:n_anchor] for p in preds])
        layout = np.zeros((n, preds[0].shape[1]))
        layout[anchors] = frame
        for p, part in zip(preds, parts):
            layout[part] = similarity_apply(p[:n_anchor], frame, p[n_anchor:])
        return layout

    # ------------------------------------------------------------------ persistence
    def save(self, dir_path: str, prefix: str | None = None, overwrite: bool = False, **kwargs) -> None:
        """Save the model atomically: a crash mid-save never destroys an existing model folder.

        The model is written to a temporary folder beside ``dir_path``, which then replaces it.

        Parameters
        ----------
        dir_path
            Folder to save into.
        prefix
            Prefix of the file names.
        overwrite
            Replace an existing folder.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.save` (e.g. ``save_anndata=True``).

        Examples
        --------
        >>> model.save("model_dir", overwrite=True)  # doctest: +SKIP
        """
        target = os.path.abspath(dir_path)
        if os.path.exists(target) and not overwrite:
            raise ValueError(f"{dir_path} already exists. Pass overwrite=True to replace it.")
        parent = os.path.dirname(target) or "."
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".spatialedm-save-", dir=parent)
        try:
            super().save(tmp, prefix=prefix, overwrite=True, **kwargs)
            old = None
            if os.path.exists(target):
                old = tempfile.mkdtemp(prefix=".spatialedm-old-", dir=parent)
                os.rmdir(old)
                os.rename(target, old)
            os.rename(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if os.path.exists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None, **kwargs):
        """Load a saved model; without ``adata`` (and none saved) the model loads for queries only.

        Parameters
        ----------
        dir_path
            Folder written by :meth:`save`.
        adata
            Reference AnnData to attach (same genes in the same order, with coordinates). Any other
            AnnData (a query: other gene order, extra genes, no coordinates) is checked for the model's
            genes and the model is loaded unattached; an AnnData missing genes raises ``ValueError``.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load`.

        Returns
        -------
        The loaded model.

        Examples
        --------
        >>> model = sem.SpatialEDM.load("model_dir")  # doctest: +SKIP
        """
        if not os.path.isdir(dir_path):
            raise FileNotFoundError(f"No saved model folder at {dir_path}.")
        if adata is None and not any(f.endswith("adata.h5ad") for f in os.listdir(dir_path)):
            adata = False
        if adata is None or adata is False:
            return super().load(dir_path, adata=adata, **kwargs)
        # A query (other gene order, extra genes, no coordinates) is not a reference to attach: load
        # the model on its own and check that the query has every gene the model reads.
        model = super().load(dir_path, adata=False, **kwargs)
        missing = pd.Index(model.var_names_).difference(adata.var_names)
        if len(missing):
            raise ValueError(
                f"The AnnData lacks {len(missing)} of the model's {len(model.var_names_)} genes, e.g. "
                f"{missing[:5].tolist()}; it cannot be attached as the model's reference."
            )
        setup = model.registry_["setup_args"]
        same_genes = list(map(str, adata.var_names)) == model.var_names_
        if same_genes and setup.get("spatial_key") in adata.obsm:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*var_names for adata passed in does not match.*")
                return super().load(dir_path, adata=adata, **kwargs)
        logger.info("Loaded the model without a reference; pass the AnnData to get_latent_coordinates.")
        return model
