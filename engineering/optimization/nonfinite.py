"""``Trainer(on_nonfinite=...)``: what a training step does with a NaN or infinite loss.

``None`` (the default, as Lightning) does nothing: the optimizer steps with whatever gradients backward made.
The other policies wrap two callables of ``loop/fit.py``'s ``TrainingStep`` once per epoch, so that without a
policy the step pays nothing:

    training_step → the loss is checked           "raise": FloatingPointError naming the step, before backward
    optimizer step   → skipped when any loss of   "skip": gradients dropped, a warning the first time
                       the window was not finite  "stop": the weights saved, then trainer.should_stop
Reading the loss's value waits for the device; that is the price of the check.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engineering.errors import MisconfigurationError
from engineering.optimization.optimizers import loss_from

POLICIES = (None, "raise", "skip", "stop")


def check_policy(value: Any) -> Any:
    if value not in POLICIES:
        raise MisconfigurationError(f"on_nonfinite={value!r} is not a policy; use None, 'raise', 'skip' or 'stop'.")
    return value


class NonFiniteGuard:
    """Checks each loss of an accumulation window; at the window's end, skips or allows the optimizer step."""

    def __init__(self, trainer: Any, policy: str, through_closure: bool) -> None:
        if through_closure and policy != "raise":
            raise MisconfigurationError(
                f"on_nonfinite={policy!r} needs the default optimizer step: with an overridden optimizer_step or "
                "an optimizer that calls a closure (LBFGS) the step has run before the loss is known. Use "
                "on_nonfinite='raise', or check the loss in your optimizer_step."
            )
        self.trainer, self.policy = trainer, policy
        self.bad_loss: float | None = None  # the first non-finite loss of the current window, and where it was
        self.bad_at = ""
        self.warned = False

    def checked(self, training_step: Callable[..., Any]) -> Callable[..., Any]:
        def step_then_check(*args: Any) -> Any:
            outputs = training_step(*args)
            loss = loss_from(outputs)
            if loss is not None:
                self.inspect(loss)
            return outputs
        return step_then_check

    def inspect(self, loss: torch.Tensor) -> None:
        value = float(loss.detach())
        if math.isfinite(value):
            return
        if self.policy == "raise":
            raise FloatingPointError(
                f"The loss is {value} at global_step {self._where()}. Look for a division by zero, a log of 0, or "
                "a learning rate too high; Trainer(detect_anomaly=True) names the operation that made it, and "
                "on_nonfinite='skip' steps over such batches."
            )
        if self.bad_loss is None:
            self.bad_loss, self.bad_at = value, self._where()

    def guarded(self, step_optimizer: Callable[[], Any], optimizer: Any) -> Callable[[], Any]:
        def step_unless_nonfinite() -> Any:
            bad = self.bad_loss is not None
            strategy = self.trainer.strategy
            if strategy.world_size > 1:  # every rank skips, or none: the gradients were all-reduced together
                bad = strategy.reduce_boolean_decision(bad, all=False)
            if not bad:
                return step_optimizer()
            self._skip(optimizer)
            return None
        return step_unless_nonfinite

    def _skip(self, optimizer: Any) -> None:
        optimizer.zero_grad(set_to_none=True)  # the step's gradients are poisoned: none of them is applied
        value, where, self.bad_loss = self.bad_loss, self.bad_at, None
        trainer = self.trainer
        if self.policy == "skip":
            if not self.warned and trainer.is_global_zero:
                warnings.warn(
                    f"The loss is {value} at global_step {where}: the optimizer step was skipped "
                    "(on_nonfinite='skip'). Later skips are not reported again.", RuntimeWarning, stacklevel=2,
                )
            self.warned = True
            return
        path = Path(trainer.default_root_dir) / f"nonfinite_step_{trainer.global_step}.ckpt"
        trainer.save_checkpoint(path)  # the weights before the step: the poisoned gradients are not applied
        trainer.progress.should_stop, trainer.progress.stop_reason = True, "nonfinite"
        if trainer.is_global_zero:
            print(f"The loss is {value} at global_step {where}: saved {path} and stopped "
                  "(on_nonfinite='stop').", flush=True)

    def _where(self) -> str:
        progress = self.trainer.progress
        return f"{progress.global_step} (epoch {progress.epoch}, batch_idx {progress.batch_idx})"
