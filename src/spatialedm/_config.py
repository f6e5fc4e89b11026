"""Configuration dataclasses: network shape and losses (:class:`ModelConfig`), training sets (:class:`SetConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


class _ConfigMixin:
    @classmethod
    def from_kwargs(cls, base=None, **kwargs):
        """Return ``base`` (or the defaults) with the fields in ``kwargs`` replaced; unknown names raise."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"Unknown {cls.__name__} option(s) {unknown}; valid options are {sorted(names)}.")
        values = asdict(base) if base is not None else {}
        values.update(kwargs)
        return cls(**values)

    def to_dict(self) -> dict:
        """Return the configuration as a plain dictionary."""
        return asdict(self)


@dataclass
class ModelConfig(_ConfigMixin):
    """Network sizes, regularisation and loss settings of :class:`~spatialedm.SpatialEDM`.

    Parameters
    ----------
    n_hidden
        Width of the expression encoder's hidden layers.
    n_latent
        Dimension of the per-cell expression embedding ``Z``.
    n_encoder_layers
        Hidden layers of the expression encoder.
    dim
        Width of the set-attention networks (context ``H``, generator, denoiser).
    n_context_blocks, n_generator_blocks, n_denoiser_blocks
        ISAB blocks in the context encoder, generator and denoiser.
    n_inducing
        Inducing points per ISAB block.
    n_heads
        Attention heads.
    dropout
        Dropout rate in the expression encoder (the set networks use none: it is slow on CPUs and the
        input noise below regularises them).
    scale_genes
        Divide each gene by its own spread in the reference (``True``), or all genes by one global spread
        (``False``), which keeps the relative variance of the genes as a PCA of log-expression does.
        ``None`` (default): per gene when the encoder reads the genes themselves, globally when it reads
        principal components (``n_pcs``), as scanpy's PCA of log-normalised data does.
    n_top_genes
        With more genes than this in the reference, the model reads only its ``n_top_genes`` most variable
        genes (scanpy's ``highly_variable_genes``, per section, on the normalised reference), so that a
        whole-transcriptome panel does not give the encoder thousands of noisy inputs to memorise. ``None``
        reads every gene.
    n_pcs
        With more model genes than this, the encoder reads the expression projected onto the reference's
        ``n_pcs`` leading principal axes (fitted once on the preprocessed reference, after gene dropout and
        noise are applied to the genes), so that a wide panel reaches the encoder as a few dozen
        denoised inputs rather than thousands of noisy ones. ``None`` reads the genes directly.
    finetune_encoder
        Keep training the expression encoder with the generator instead of freezing it after the
        contrastive stage.
    encoder_lr_factor
        Learning rate of the expression encoder while it is fine-tuned with the generator, relative to the
        other networks' (``1`` trains all at one rate; ``0`` is the same as ``finetune_encoder=False``).
    gene_dropout
        Fraction of genes zeroed at random in training inputs: with the Gaussian noise below, it keeps the
        model from memorising where each reference cell sits.
    expression_noise
        Standard deviation of Gaussian noise added to the scaled training inputs.
    temperature
        InfoNCE temperature of the spatial-contrastive encoder loss.
    n_positive
        Physical nearest neighbours counted as positives in the contrastive loss.
    vicreg_weight
        Weight of the VICReg variance and covariance terms.
    local_k
        Neighbours per cell in the generator's local distance loss.
    local_weight
        Weight of the generator's local distance loss.
    scale_weight
        Weight of the generator's log-scale loss.
    sigma_min_factor, sigma_max_factor
        Training noise levels span ``[sigma_min_factor, sigma_max_factor] * sigma_data`` of the residual.
    sigma_start_factor
        Default starting noise level of the refiner, in units of the residual's ``sigma_data``.
    n_steps
        Default number of Heun steps of the refiner.
    stretch_generator
        Before the refiner, stretch each set's generator layout along its principal axes to the tissue's
        proportions (see :func:`~spatialedm._proportions.stretch_to_proportions`): in training to the
        set's own true proportions, when placing cells to the reference sections' (median). The refiner
        then corrects a layout that already has the tissue's proportions instead of the generator's
        narrower one.
    """

    n_hidden: int = 256
    n_latent: int = 64
    n_encoder_layers: int = 2
    dim: int = 64
    n_context_blocks: int = 2
    n_generator_blocks: int = 2
    n_denoiser_blocks: int = 3
    n_inducing: int = 16
    n_heads: int = 4
    dropout: float = 0.1
    scale_genes: bool | None = None
    n_top_genes: int | None = 2000
    n_pcs: int | None = 50
    finetune_encoder: bool = True
    encoder_lr_factor: float = 1.0
    gene_dropout: float = 0.2
    expression_noise: float = 0.3
    temperature: float = 0.1
    n_positive: int = 5
    vicreg_weight: float = 0.1
    local_k: int = 8
    local_weight: float = 1.0
    scale_weight: float = 0.1
    sigma_min_factor: float = 0.02
    sigma_max_factor: float = 3.0
    sigma_start_factor: float = 2.0
    n_steps: int = 1
    stretch_generator: bool = False

    def __post_init__(self):
        if not 0 < self.sigma_min_factor < self.sigma_max_factor:
            raise ValueError(
                f"Need 0 < sigma_min_factor < sigma_max_factor, got {self.sigma_min_factor} and "
                f"{self.sigma_max_factor}."
            )
        if self.n_top_genes is not None and self.n_top_genes < 1:
            raise ValueError(f"n_top_genes must be positive or None, got {self.n_top_genes}.")
        if self.n_pcs is not None and self.n_pcs < 1:
            raise ValueError(f"n_pcs must be positive or None, got {self.n_pcs}.")
        if self.encoder_lr_factor < 0:
            raise ValueError(f"encoder_lr_factor must be non-negative, got {self.encoder_lr_factor}.")
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be at least 1, got {self.n_steps}.")


@dataclass
class SetConfig(_ConfigMixin):
    """How training sets are drawn from the reference.

    Sets mix local patches with random subsets of a section, so that they look like the cells the model
    is asked to place (dissociated cells are a random sample of the tissue, not a local patch).

    Parameters
    ----------
    n_sets_per_epoch
        Training sets drawn per epoch.
    sets_per_batch
        Sets per optimisation step.
    min_set_size, max_set_size
        Set sizes are drawn uniformly in this range (capped by the section size).
    local_fraction
        Fraction of sets that are local patches (a random centre and its nearest cells); the rest are
        random subsets of a whole section, as dissociated cells are.
    validation_fraction
        Fraction of each section held out as one contiguous spatial block for validation.
    n_validation_sets
        Validation sets drawn (once, fixed) from the held-out blocks.
    count_views
        Re-measured copies of a count reference that training sets also draw their expression from (``0``,
        the default: none; 8 lifts single cells placed from a spot reference but costs a spot-level query
        of the same technology, see the docs' notes on measurement shift): each copy thins every cell's counts to a random depth and scales every gene by a random
        capture factor, then is preprocessed as a query is, so that the model meets the reference as
        another depth, resolution or platform would measure it. A set reads the original or one copy, each
        equally likely. Ignored for log-normalised references.
    min_depth
        Lowest fraction of its counts a cell keeps in a copy (drawn log-uniformly up to 1); the default
        1/16 reaches below the depth of one cell of a spot of 8.
    capture_sd
        Standard deviation of a gene's natural-log capture factor in a copy.
    """

    n_sets_per_epoch: int = 256
    sets_per_batch: int = 8
    min_set_size: int = 64
    max_set_size: int = 512
    local_fraction: float = 0.5
    validation_fraction: float = 0.1
    n_validation_sets: int = 32
    count_views: int = 0
    min_depth: float = 0.0625
    capture_sd: float = 0.5

    def __post_init__(self):
        if self.count_views < 0:
            raise ValueError(f"count_views must be non-negative, got {self.count_views}.")
        if not 0 < self.min_depth <= 1:
            raise ValueError(f"min_depth must lie in (0, 1], got {self.min_depth}.")
        if self.capture_sd < 0:
            raise ValueError(f"capture_sd must be non-negative, got {self.capture_sd}.")
