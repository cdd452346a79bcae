"""GradientAccumulationScheduler: how many batches make one optimizer step, by epoch."""

from __future__ import annotations

import warnings
from typing import Any

from engineering import Callback, MisconfigurationError
from research import LightningModule


class GradientAccumulationScheduler(Callback):
    """Set ``trainer.accumulate_grad_batches`` at the start of each epoch from ``scheduling``, a dict
    ``{first epoch (0-based): batches per step}``; epochs before the smallest key accumulate 1.

    ``GradientAccumulationScheduler({0: 4, 5: 2, 10: 1})`` steps every 4 batches in epochs 0–4, every 2 in 5–9,
    every batch from 10 on. The factor follows from the epoch alone, so a resumed run needs no saved state.
    """

    def __init__(self, scheduling: dict[int, int]) -> None:
        if not scheduling:
            raise TypeError("GradientAccumulationScheduler(scheduling={}) is empty: give {epoch: factor, ...}.")
        if any(isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0 for epoch in scheduling):
            raise MisconfigurationError(
                f"GradientAccumulationScheduler: epochs must be ints >= 0 (0-based); got {list(scheduling)}."
            )
        if any(isinstance(factor, bool) or not isinstance(factor, int) or factor < 1 for factor in scheduling.values()):
            raise MisconfigurationError(
                f"GradientAccumulationScheduler: factors must be ints >= 1; got {list(scheduling.values())}."
            )
        self.scheduling = {0: 1, **scheduling}
        self.epochs = sorted(self.scheduling)

    def going_to_accumulate_grad_batches(self) -> bool:
        return any(factor > 1 for factor in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The factor for ``epoch``: the value of the largest scheduled epoch not after it."""
        return self.scheduling[max(first for first in self.epochs if first <= epoch)]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                "GradientAccumulationScheduler works with automatic optimization only. With manual optimization, "
                "step the optimizers every N batches in training_step, and remove the callback."
            )
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) and a "
                "GradientAccumulationScheduler both set the factor: remove one of the two."
            )
        overrides_step = any(getattr(type(pl_module), hook) is not getattr(LightningModule, hook)
                             for hook in ("optimizer_step", "optimizer_zero_grad"))
        if overrides_step and self.going_to_accumulate_grad_batches():
            warnings.warn(
                "The module overrides optimizer_step or optimizer_zero_grad, and GradientAccumulationScheduler "
                "accumulates: those hooks run once per optimizer step, not once per batch.",
                RuntimeWarning, stacklevel=2,
            )

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)
