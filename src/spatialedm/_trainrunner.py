"""The train runner: scvi-tools' :class:`~scvi.train.TrainRunner` with this model's stage-aware details."""

from __future__ import annotations

import logging

from lightning.pytorch.strategies import DDPStrategy
from scvi.train import TrainRunner

from ._logging import quiet_third_party

logger = logging.getLogger(__name__)

_START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_notebook": "fork"}


class SpatialEDMTrainRunner(TrainRunner):
    """Runs the Lightning fit of a :class:`~spatialedm.SpatialEDM`.

    Beyond scvi-tools' runner it

    - turns ``strategy="ddp"`` (or ``"ddp_spawn"``, ``"ddp_notebook"``) into a DDP strategy that
      tolerates unused parameters: each training stage leaves the other stages' parameters without
      gradients, and plain DDP would stop at the first step waiting for their reduction;
    - keeps the weights reached so far when the user interrupts training (Ctrl-C, a notebook's stop
      button), so that a session's model is not lost;
    - refuses to go on after SIGTERM, which Lightning otherwise turns into a normal end of training:
      a killed job must not continue with a half-trained model.

    Parameters
    ----------
    model, training_plan, data_splitter, max_epochs, accelerator, devices
        As for :class:`~scvi.train.TrainRunner`.
    **trainer_kwargs
        Passed to :class:`~scvi.train.Trainer`.
    """

    def __init__(
        self,
        model,
        training_plan,
        data_splitter,
        max_epochs,
        accelerator="auto",
        devices="auto",
        **trainer_kwargs,
    ):
        strategy = trainer_kwargs.get("strategy")
        if strategy in _START_METHODS:
            trainer_kwargs["strategy"] = DDPStrategy(
                find_unused_parameters=True, start_method=_START_METHODS[strategy]
            )
        if getattr(data_splitter, "val_dataset", None) is not None:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        trainer_kwargs.setdefault("log_every_n_steps", 1)
        # Lightning's Trainer advertises its cloud logger when it is built
        with quiet_third_party():
            super().__init__(
                model,
                training_plan=training_plan,
                data_splitter=data_splitter,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                **trainer_kwargs,
            )

    def __call__(self):
        """Run training; see the class notes for interrupts and SIGTERM."""
        plan = self.training_plan
        try:
            with quiet_third_party(training=True):
                out = super().__call__()
        except (KeyboardInterrupt, SystemExit) as err:
            # Lightning turns Ctrl-C into SystemExit(1) after a graceful shutdown.
            if isinstance(err, SystemExit) and err.code not in (1, None):
                raise
            self.model.module.eval()
            self.model.is_trained = True
            self.model.validation_indices = self.data_splitter.val_idx
            logger.warning(
                "Training interrupted after %d epoch(s) (stage %r); the model keeps the weights reached so far.",
                plan.current_epoch,
                plan.stage,
            )
            return None
        if getattr(self.trainer, "received_sigterm", False):
            raise RuntimeError(f"Training was stopped by SIGTERM after {plan.current_epoch} epoch(s).")
        return out
