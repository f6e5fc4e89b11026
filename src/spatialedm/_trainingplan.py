"""Lightning training plan: encoder stage, generator stage, refiner stage, one optimiser."""

from __future__ import annotations

from scvi.train import TrainingPlan

from ._constants import MASK_KEY, STAGES
from ._module import SpatialEDMModule


def stage_epochs(max_epochs: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Split ``max_epochs`` into encoder, generator and refiner epochs.

    A stage with a positive share gets at least one epoch; a zero share skips the stage, e.g.
    ``(0, 0, 1)`` retrains only the refiner of a trained model.

    Parameters
    ----------
    max_epochs
        Total epochs (at least one per stage with a positive share).
    fractions
        Relative share of each stage (non-negative, not all zero).

    Returns
    -------
    Epochs per stage, summing to ``max_epochs``.

    Examples
    --------
    >>> stage_epochs(10, (0.2, 0.5, 0.3))
    (2, 5, 3)
    >>> stage_epochs(4, (0, 0, 1))
    (0, 0, 4)
    """
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"stage_fractions must be three non-negative shares, not all zero; got {fractions}.")
    active = [f > 0 for f in fractions]
    if max_epochs < sum(active):
        raise ValueError(
            f"max_epochs must be at least {sum(active)} (one per training stage), got {max_epochs}."
        )
    total = sum(fractions)
    a = max(1, round(max_epochs * fractions[0] / total)) if active[0] else 0
    c = max(1, round(max_epochs * fractions[2] / total)) if active[2] else 0
    b = max_epochs - a - c if active[1] else 0
    if active[1] and b < 1:
        b = 1
    if active[0]:
        a = max_epochs - b - c
    elif active[2]:
        c = max_epochs - a - b
    return a, b, c


class SpatialEDMTrainingPlan(TrainingPlan):
    """Trains :class:`~spatialedm._module.SpatialEDMModule` stage by stage.

    Epochs ``[0, a)`` train the expression encoder (spatial contrastive), ``[a, a + b)`` the context
    encoder and generator (the expression encoder fine-tuned with them unless
    ``ModelConfig.finetune_encoder=False``), and the rest the refiner with everything else frozen.
    Losses are logged per stage as ``train_loss_<stage>`` / ``validation_loss_<stage>``.

    It subclasses scvi-tools' :class:`~scvi.train.TrainingPlan` for the optimiser set-up
    (``optimizer``, ``lr``, ``weight_decay``, ``reduce_lr_on_plateau`` ... as there) and its
    distributed-training helpers, and replaces the steps: scvi's steps compute ELBO terms
    (reconstruction, KL) that this model does not have, and know no training stages.

    Parameters
    ----------
    module
        The module to train.
    stage_epochs
        Epochs of the encoder, generator and refiner stages.
    lr
        Learning rate.
    weight_decay
        Weight decay (AdamW).
    **kwargs
        Further options of :class:`~scvi.train.TrainingPlan` (e.g. ``optimizer``).
    """

    def __init__(
        self,
        module: SpatialEDMModule,
        stage_epochs: tuple[int, int, int],
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        **kwargs,
    ):
        kwargs.setdefault("optimizer", "AdamW")
        kwargs.setdefault("eps", 1e-8)  # torch's default; scvi's 0.01 damps the small gradients of this model
        super().__init__(module, lr=lr, weight_decay=weight_decay, **kwargs)
        self.stage_epochs = tuple(int(e) for e in stage_epochs)

    @property
    def stage(self) -> str:
        """The stage of the current epoch."""
        a, b, _ = self.stage_epochs
        epoch = self.current_epoch
        return STAGES[0] if epoch < a else STAGES[1] if epoch < a + b else STAGES[2]

    def configure_optimizers(self):
        """scvi-tools' optimiser, with the expression encoder in its own parameter group.

        The group's learning rate follows the others' (and any scheduler's) in the encoder stage and is
        scaled by ``ModelConfig.encoder_lr_factor`` while the encoder is fine-tuned with the generator.
        """
        config = super().configure_optimizers()
        optimizer = config["optimizer"]
        encoder = {id(p) for p in self.module.encoder.parameters()}
        group = optimizer.param_groups[0]
        params = group["params"]
        group["params"] = [p for p in params if id(p) not in encoder]
        optimizer.add_param_group({"params": [p for p in params if id(p) in encoder]})
        return config

    def on_train_epoch_start(self):
        """Set the encoder group's learning rate for this epoch's stage."""
        optimizers = self.optimizers(use_pl_optimizer=False)
        optimizer = optimizers[0] if isinstance(optimizers, list) else optimizers
        if len(optimizer.param_groups) < 2:
            return
        factor = 1.0 if self.stage == STAGES[0] else self.module.config.encoder_lr_factor
        optimizer.param_groups[1]["lr"] = optimizer.param_groups[0]["lr"] * factor

    def forward(self, batch, stage: str):
        """Run the module and return its :class:`~scvi.module.base.LossOutput`."""
        kw = {"stage": stage}
        _, _, loss_output = self.module(batch, inference_kwargs=kw, generative_kwargs=kw, loss_kwargs=kw)
        return loss_output

    @property
    def _sync(self) -> bool:
        # Under DDP, epoch metrics are averaged over the ranks.
        return self._trainer is not None and self.use_sync_dist

    def _log_stage(self, prefix: str, stage: str, out, batch_size: int):
        kw = {"on_epoch": True, "on_step": False, "batch_size": batch_size, "sync_dist": self._sync}
        self.log(f"{prefix}_loss_{stage}", out.loss, **kw)
        for key, val in out.extra_metrics.items():
            self.log(f"{prefix}_{key}", val, **kw)
        # scvi-tools' checkpoint callback monitors "validation_loss": the current stage's loss.
        self.log(f"{prefix}_loss", out.loss, prog_bar=prefix == "train", **kw)

    def training_step(self, batch, batch_idx):
        """One optimisation step of the current stage."""
        stage = self.stage
        out = self.forward(batch, stage)
        self._log_stage("train", stage, out, batch[MASK_KEY].shape[0])
        return out.loss

    def validation_step(self, batch, batch_idx):
        """Loss of the current stage on sets from the held-out spatial blocks."""
        stage = self.stage
        if stage == "refiner" and float(self.module.sigma_data) <= 0:
            return None
        out = self.forward(batch, stage)
        self._log_stage("validation", stage, out, batch[MASK_KEY].shape[0])
        return out.loss
