"""SpatialEDM: the user-facing scvi-tools model (set-up, training, placement, persistence)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from anndata import AnnData
from scvi import settings
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField, ObsmField
from scvi.model.base import BaseModelClass
from scvi.utils import setup_anndata_dsp

from . import _persistence, diagnostics, transfer
from ._config import ModelConfig, SetConfig
from ._constants import DEFAULT_KEY_ADDED, REGISTRY_KEYS
from ._datasplitter import SetDataSplitter
from ._docs import as_method, placement_dsp
from ._inference import LayoutPredictor, check_options, embed_rows, write_layout
from ._logging import quiet_third_party
from ._module import SpatialEDMModule
from ._preprocessing import ExpressionView, Preprocessor, principal_axes
from ._prior import check_prior_weight, resolve_prior
from ._proportions import check_shape_weight, tissue_proportions
from ._spacing import tissue_spacing
from ._trainingplan import SpatialEDMTrainingPlan, stage_epochs
from ._trainrunner import SpatialEDMTrainRunner
from ._validation import validate_expression, validate_spatial

logger = logging.getLogger(__name__)

#: Default training epochs (of 256 sets each): about 3-6 minutes on 2 CPU cores.
DEFAULT_MAX_EPOCHS = 30


class SpatialEDM(BaseModelClass):
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
    registry, preprocessor
        Used by :meth:`load`: the saved AnnData registry and preprocessing.
    **model_kwargs
        Fields of :class:`~spatialedm.ModelConfig`, e.g. ``dim=64``.

    Examples
    --------
    >>> import spatialedm as sem
    >>> ref = sem.datasets.osmfish_cortex()
    >>> sem.SpatialEDM.setup_anndata(ref, layer="counts", spatial_key="spatial")
    >>> model = sem.SpatialEDM(ref)
    >>> model.train()  # doctest: +SKIP
    >>> coords = model.get_latent_coordinates(sem.datasets.osmfish_scrna())  # doctest: +SKIP

    (Not run in the doctests: training with the defaults takes minutes; the other examples use a tiny model.)
    """

    _module_cls = SpatialEDMModule
    _data_splitter_cls = SetDataSplitter
    _training_plan_cls = SpatialEDMTrainingPlan
    _train_runner_cls = SpatialEDMTrainRunner

    def __init__(
        self,
        adata: AnnData | None = None,
        config: ModelConfig | None = None,
        registry: dict | None = None,
        preprocessor: dict | None = None,
        **model_kwargs,
    ):
        super().__init__(adata, registry=registry)
        config = ModelConfig.from_kwargs(config, **model_kwargs)
        self.model_config_, self.set_config_ = config.to_dict(), SetConfig().to_dict()
        fresh = preprocessor is None
        if fresh:  # fitted once here, saved, reused for every query
            setup = self.registry_["setup_args"]
            preprocessor = Preprocessor.fit_registered(adata, setup, config).to_dict()
        self.preprocessor_ = dict(preprocessor)
        n_genes, n_spatial = len(self.preprocessor_["genes"]), int(self.summary_stats["n_spatial"])
        self.module = self._module_cls(n_genes, n_spatial, config)
        if fresh and self.module.n_projected is not None:  # saved in the module's state thereafter
            axes = principal_axes(self.expression_view(), self.module.n_projected)
            self.module.gene_projection.copy_(torch.from_numpy(axes))
        if fresh:
            # measured per section (each in its own frame): the cell spacing and the tissue's proportions
            coords, sections = self._reference_coordinates()
            self.module.spacing.fill_(tissue_spacing(coords, sections))
            self.module.proportions.copy_(torch.from_numpy(tissue_proportions(coords, sections)))
        self._model_summary_string = f"SpatialEDM model: {n_genes} genes, {n_spatial}-D layout."
        self.init_params_ = self._get_init_params(locals())

    def _reference_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """The registered reference's coordinates and the section of each cell."""
        coords = self.adata_manager.get_from_registry(REGISTRY_KEYS.SPATIAL_KEY)
        sections = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        return np.asarray(coords, dtype=np.float64), sections

    @property
    def preprocessor(self) -> Preprocessor:
        """The expression preprocessing fitted on the reference (see :class:`~spatialedm.Preprocessor`)."""
        return Preprocessor.from_dict(self.preprocessor_)

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

        Expression may be raw counts (normalised to the reference's median library size and
        log-transformed inside the model) or log-normalised values, dense or sparse. Like every
        scvi-tools model, this adds ``uns["_scvi_uuid"]``, ``uns["_scvi_manager_uuid"]``,
        ``obs["_scvi_batch"]`` and ``obs["_scvi_labels"]`` to ``adata``; nothing else is changed.

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
        for name, key in (("batch_key", batch_key), ("labels_key", labels_key)):
            if key is not None and key not in adata.obs:
                raise KeyError(f"{name} {key!r} is not a column of adata.obs {list(adata.obs.columns)}.")
        validate_spatial(adata, spatial_key, batch_key=batch_key)
        validate_expression(adata, layer, expression)
        setup_method_args = cls._get_setup_method_args(**locals())
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            ObsmField(REGISTRY_KEYS.SPATIAL_KEY, spatial_key),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        with quiet_third_party():
            adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

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
            ``stage_fractions`` (encoder, generator, refiner shares of the epochs; default
            ``(0.2, 0.5, 0.3)``) and options of :class:`~spatialedm._trainingplan.SpatialEDMTrainingPlan`
            (``lr``, ``weight_decay``, ...).
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (a Lightning ``Trainer``), e.g. ``strategy="ddp"``
            (several devices; see the multi-GPU notes in the docs) or ``precision="bf16-mixed"``.

        Examples
        --------
        >>> model.train(max_epochs=3, accelerator="cpu", enable_progress_bar=False)
        >>> "train_loss_generator" in model.history
        True
        """
        if self.adata is None:
            raise ValueError(
                "This model was loaded without its reference AnnData; load it with "
                "SpatialEDM.load(path, adata=reference) to train it further."
            )
        set_config = SetConfig.from_kwargs(SetConfig(**self.set_config_), **(datasplitter_kwargs or {}))
        self.set_config_ = set_config.to_dict()
        plan_kwargs = dict(plan_kwargs or {})
        fractions = tuple(plan_kwargs.pop("stage_fractions", (0.2, 0.5, 0.3)))
        max_epochs = DEFAULT_MAX_EPOCHS if max_epochs is None else int(max_epochs)
        epochs = stage_epochs(max_epochs, fractions)
        # A retrained model keeps its held-out block, so that its diagnostics stay on unseen cells.
        held_out = self.validation_indices_ if self.is_trained_ else None
        splitter = self._data_splitter_cls(
            self.adata_manager, self.preprocessor, set_config, settings.seed or 0, held_out
        )
        plan = self._training_plan_cls(self.module, epochs, **plan_kwargs)
        logger.info("Training stages (epochs): encoder %d, generator %d, refiner %d", *epochs)
        return self._train_runner_cls(
            self, plan, splitter, max_epochs, accelerator, devices, **trainer_kwargs
        )()

    def expression_view(self, adata: AnnData | None = None) -> ExpressionView:
        """``adata`` (the reference when ``None``) seen through the model's genes and preprocessing."""
        if adata is None and self.adata is None:
            raise ValueError(
                "This model was loaded without its reference AnnData: pass the cells to place, e.g. "
                "model.get_latent_coordinates(query), or load it with SpatialEDM.load(path, adata=reference)."
            )
        setup = self.registry_["setup_args"]
        what = "reference" if adata is None else "query"
        return self.preprocessor.view(
            self.adata if adata is None else adata, setup.get("layer"), setup.get("batch_key"), what=what
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
        >>> z = model.get_latent_representation(query)
        >>> z.shape[0] == query.n_obs
        True
        """
        self._check_if_trained(warn=True)
        view, step = self.expression_view(adata), batch_size or 4096
        self.module.eval()
        with torch.inference_mode():
            return embed_rows(self.module, self.device, view, step)

    @placement_dsp.dedent
    def get_latent_coordinates(
        self,
        adata: AnnData | None = None,
        *,
        refine: bool = True,
        n_samples: int = 1,
        sigma_start: float | None = None,
        n_steps: int | None = None,
        set_size: int | None = None,
        seed: int | None = None,
        consensus: bool = False,
        stochastic: bool = False,
        relax: bool = True,
        uncertainty: str | None = "ranks",
        prior: str | np.ndarray | None = "auto",
        prior_weight: float = 0.5,
        shape_weight: float = 0.0,
        key_added: str | None = DEFAULT_KEY_ADDED,
        copy: bool = False,
    ) -> np.ndarray | AnnData:
        """Reconstruct the relative layout of cells from their expression.

        Runs the generator and, with ``refine=True``, the EDM refiner. A query larger than ``set_size``
        cells is placed as overlapping subsets moved into one frame: memory grows linearly with the cells.

        Parameters
        ----------
        adata
            Cells to place; genes are matched to the reference by name. The reference when ``None``.
        %(param_refine)s
        n_samples
            With more than one, also draw this many stochastic refinements (with fresh subsets), for
            ``uncertainty="samples"`` or ``consensus=True`` (one of them is required).
        %(param_sampler)s
        %(param_set_size)s
        %(param_seed)s
        consensus
            With ``n_samples > 1``, return the layout fitted to the median distances between cells over all
            the layouts (distance geometry) instead of the deterministic one.
        stochastic
            Return one posterior sample (the refiner started from noise) instead of the deterministic layout.
        relax
            Spread cells that the layout packs closer than the reference tissue's cell spacing apart to
            that spacing (a few sweeps of soft-sphere relaxation; neighbourhoods and global shape stay).
            ``False`` returns the network's layout as it is.
        uncertainty
            Per-cell uncertainty written to ``obs["spatialedm_uncertainty"]``, high where the expression
            does not single the cell out: ``"ranks"``, 1 minus the mean Spearman correlation between the
            cell's distances to 256 landmark cells and those of its 30 nearest cells in expression (the
            model's embedding), in [0, 2] — how much the cell's near and far would change if it sat where
            cells like it sit; ``"neighbors"``, the RMS distance in the layout from each cell to its 10
            nearest cells in expression (in units of the layout's per-axis RMS); ``"samples"``, each cell's
            RMS distance from the layout over the ``n_samples`` stochastic refinements (needs
            ``n_samples > 1``); ``None`` writes none.
        prior
            Another placement of the same cells for the refiner to correct: ``"knn"``, the reference's
            k-nearest-neighbour regression (:func:`~spatialedm.baselines.knn_regression`, its neighbours and
            principal components chosen on held-out parts of the reference; needs the reference, so a
            loaded model must be loaded with ``adata=reference``), or an ``(n_cells, d)`` array of positions
            from any method (optimal transport, Tangram; any frame and scale). Each set's prior is moved
            onto the generator's layout and mixed into it, and the refiner corrects the mix. ``"auto"``
            (default): ``"knn"`` when the model holds its reference (trained in this session, or loaded
            with ``adata=reference``) and ``adata`` is given, else none. ``None``: the generator's layout
            alone.
        prior_weight
            Weight of the prior in that mix, in [0, 1] (1: the refiner corrects the prior alone).
        shape_weight
            How far to move the layout's proportions towards the reference tissue's, in [0, 1], before
            relaxation: the layout is stretched along its own principal axes so that the share of its
            spread on each axis approaches the reference sections' (median over sections; at 1 it takes
            them exactly). A layout placed from expression is narrower than its tissue along the
            direction that expression predicts least; stretched, it looks like the tissue, but cells are
            ordered along that direction no better than before, so distances along it are noisier.
            ``0`` (default) leaves the proportions as placed.
        key_added
            ``obsm`` key written with the layout; ``None`` writes nothing.
        copy
            Write into a copy of ``adata`` and return it instead of the layout (as scanpy's ``copy``).

        Returns
        -------
        The ``(n_cells, d)`` layout, centred with unit per-axis RMS (scale and orientation carry no
        meaning); with ``copy=True``, the copy of ``adata`` holding it in ``obsm[key_added]``.

        Examples
        --------
        >>> coords = model.get_latent_coordinates(query, seed=0)
        >>> coords.shape == (query.n_obs, 2) and "X_spatialedm" in query.obsm
        True

        The network's layout alone, without the reference's kNN-regression placement mixed in:

        >>> model.get_latent_coordinates(query, seed=0, prior=None, key_added=None).shape
        (120, 2)

        The layout stretched to the reference tissue's proportions, for viewing:

        >>> model.get_latent_coordinates(query, seed=0, shape_weight=1.0, key_added=None).shape
        (120, 2)

        Then ``squidpy.pl.spatial_scatter(query, spatial_key="X_spatialedm", shape=None, color=...)`` draws
        the layout.
        """
        self._check_if_trained(warn=True)
        if copy and key_added is None:
            raise ValueError("copy=True needs a key_added to write the layout to.")
        view = self.expression_view(adata)
        # every option is checked before the prior, whose kNN selection can take a while
        check_options(n_samples, uncertainty, consensus)
        prior_weight = check_prior_weight(prior_weight)
        shape_weight = check_shape_weight(shape_weight, self.module.proportions.cpu().numpy())
        prior = resolve_prior(self, adata, prior, view.n_obs, seed)
        set_size = int(set_size or self.set_config_["max_set_size"])
        predictor = LayoutPredictor(self.module, self.device, set_size)
        layout, spread = predictor.predict(
            view,
            refine=refine,
            n_samples=n_samples,
            sigma_start=sigma_start,
            n_steps=n_steps,
            seed=seed,
            consensus=consensus,
            stochastic=stochastic,
            relax=relax,
            uncertainty=uncertainty,
            prior=prior,
            prior_weight=prior_weight,
            shape_weight=shape_weight,
        )
        target = self.adata if adata is None else adata
        return layout if key_added is None else write_layout(target, layout, spread, key_added, copy)

    # Transfer and diagnostics are functions over a trained model; these are their method forms.
    project_genes = as_method(transfer.project_genes)
    transfer_labels = as_method(transfer.transfer_labels)
    diagnose = as_method(diagnostics.diagnose)
    sampling_probe = as_method(diagnostics.sampling_probe)

    def save(
        self, dir_path: str, prefix: str | None = None, overwrite: bool = False, save_anndata: bool = False
    ):
        """Save the model as JSON and tensors, atomically; see the "Security and file formats" docs page.

        Parameters
        ----------
        dir_path
            Folder to save into (created if needed).
        prefix
            Prefix of the file names (no path separators or ``..``).
        overwrite
            Replace the files of a model saved before under the same prefix.
        save_anndata
            Also write the reference AnnData.

        Examples
        --------
        >>> model.save("model_dir", overwrite=True)
        """
        _persistence.save_model(self, dir_path, prefix=prefix, overwrite=overwrite, save_anndata=save_anndata)

    @classmethod
    def load(
        cls,
        dir_path: str,
        adata: AnnData | None = None,
        prefix: str | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
    ):
        """Load a saved model, after checking it (see the "Security and file formats" docs page).

        Without ``adata`` (and none saved with it) the model loads for queries only.

        Parameters
        ----------
        dir_path
            Folder written by :meth:`save`.
        adata
            Reference AnnData to attach: the AnnData the model was set up on (its genes in the same order,
            with coordinates), even when the model reads only its most variable genes. An AnnData that
            lacks any of the model's genes is refused with their number and first names (cells that lack
            some genes go to :meth:`get_latent_coordinates`, which sets them to the reference mean); any
            other AnnData (a query) is not attached (pass it to :meth:`get_latent_coordinates` instead).
        prefix
            Prefix given to :meth:`save`.
        accelerator, device
            Where to put the model, as in scvi-tools.

        Returns
        -------
        The loaded model.

        Examples
        --------
        >>> model.save("model_dir", overwrite=True)
        >>> loaded = sem.SpatialEDM.load("model_dir")
        >>> loaded.is_trained
        True
        """
        return _persistence.load_model(
            cls, dir_path, adata=adata, prefix=prefix, accelerator=accelerator, device=device
        )
