"""The hooks a LightningModule may override: each does nothing (or the plain PyTorch call) until it does.

The Trainer calls a module hook right after the callbacks' hook of the same name; the order of them all
is in docs/events.md. Hooks that take part in optimization or move batches, and the step methods, are
on ``LightningModule`` itself.
"""

from __future__ import annotations

from typing import Any

import torch


class ModuleHooks:
    """The run's hooks, inherited by ``LightningModule``; override the ones you need."""

    # -- the run --------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download or convert data; called once (per node, or on global rank 0 with
        ``prepare_data_per_node = False``) before ``setup``. Do not set state here: other processes
        do not run it."""

    def setup(self, stage: str) -> None:
        """Build what the stage needs, on every process, before ``configure_model`` and the loops.

        Args:
            stage: ``"fit"``, ``"validate"``, ``"test"`` or ``"predict"``.
        """

    def teardown(self, stage: str) -> None:
        """Release what ``setup`` built; runs at the end of the stage, after an error too.

        Args:
            stage: ``"fit"``, ``"validate"``, ``"test"`` or ``"predict"``.
        """

    def on_fit_start(self) -> None:
        """At the start of fit, after ``setup`` and before the sanity check."""

    def on_fit_end(self) -> None:
        """At the end of fit, before ``teardown``."""

    # -- training -------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        """After the sanity check, before the first training epoch."""

    def on_train_end(self) -> None:
        """After the last training epoch."""

    def on_train_epoch_start(self) -> None:
        """Before the first batch of each training epoch."""

    def on_train_epoch_end(self) -> None:
        """After each training epoch (and its validation, when it runs at the epoch's end); values logged
        here are visible to ModelCheckpoint and EarlyStopping, which hear this event after the module."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """Before ``training_step``.

        Args:
            batch: The batch, already on the device.
            batch_idx: Its index within the epoch.

        Returns:
            ``-1`` to end the epoch here; anything else goes on.
        """

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the optimizer step (or after ``training_step`` when the step is accumulated).

        Args:
            outputs: What ``training_step`` returned, as a dict (``{"loss": ...}`` for a bare loss).
            batch: The batch.
            batch_idx: Its index within the epoch.
        """

    # -- validation, test, predict --------------------------------------------------------------
    def on_validation_start(self) -> None:
        """Before the validation loop (also the sanity check's)."""

    def on_validation_end(self) -> None:
        """After the validation loop and its logging."""

    def on_validation_epoch_start(self) -> None:
        """Before the first validation batch."""

    def on_validation_epoch_end(self) -> None:
        """After the last validation batch; epoch-level values logged here reach the loggers."""

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Before ``validation_step``.

        Args:
            batch: The batch, already on the device.
            batch_idx: Its index within its dataloader.
            dataloader_idx: Which validation dataloader it came from.
        """

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """After ``validation_step``.

        Args:
            outputs: What ``validation_step`` returned.
            batch: The batch.
            batch_idx: Its index within its dataloader.
            dataloader_idx: Which validation dataloader it came from.
        """

    def on_test_start(self) -> None:
        """Before the test loop."""

    def on_test_end(self) -> None:
        """After the test loop and its logging."""

    def on_test_epoch_start(self) -> None:
        """Before the first test batch."""

    def on_test_epoch_end(self) -> None:
        """After the last test batch; epoch-level values logged here reach the loggers."""

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Before ``test_step``; the arguments are those of ``on_validation_batch_start``."""

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """After ``test_step``, with what it returned as ``outputs``."""

    def on_predict_start(self) -> None:
        """Before the predict loop."""

    def on_predict_end(self) -> None:
        """After the predict loop."""

    def on_predict_epoch_start(self) -> None:
        """Before the first predict batch."""

    def on_predict_epoch_end(self) -> None:
        """After the last predict batch."""

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Before ``predict_step``; the arguments are those of ``on_validation_batch_start``."""

    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """After ``predict_step``, with its prediction as ``outputs``."""

    # -- around the optimizer step --------------------------------------------------------------
    def on_before_zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        """Before the gradients are zeroed, at the first batch of an accumulation window.

        Args:
            optimizer: The optimizer whose gradients are about to be zeroed.
        """

    def on_before_backward(self, loss: torch.Tensor) -> None:
        """Before ``backward``, with the loss backward will get (divided by the accumulation factor,
        scaled under 16-bit mixed precision)."""

    def on_after_backward(self) -> None:
        """After ``backward``, when the gradients are populated and before they are unscaled or clipped."""

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """After the gradients are unscaled and before they are clipped and the optimizer steps, at the last
        batch of an accumulation window: the place to inspect gradient norms.

        Args:
            optimizer: The optimizer about to step.
        """

    # -- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """While a checkpoint is built: add to or change ``checkpoint`` in place (its ``state_dict`` is in)."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """When a checkpoint was read, before its weights are loaded: restore what ``on_save_checkpoint``
        added, or adapt old keys."""

    # -- evaluation modes -----------------------------------------------------------------------
    def on_validation_model_zero_grad(self) -> None:
        """Before validation inside fit: drop gradients so their memory is free while validating."""
        self.zero_grad(set_to_none=True)

    def on_validation_model_eval(self) -> None:
        """Before validation: ``self.eval()``; override to keep, e.g., dropout on."""
        self.eval()

    def on_validation_model_train(self) -> None:
        """After validation inside fit: ``self.train()``, back to training."""
        self.train()

    def on_test_model_eval(self) -> None:
        """Before testing: ``self.eval()``."""
        self.eval()

    def on_test_model_train(self) -> None:
        """After testing: ``self.train()``."""
        self.train()

    def on_predict_model_eval(self) -> None:
        """Before predicting: ``self.eval()``."""
        self.eval()
