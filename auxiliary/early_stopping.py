"""EarlyStopping: stop training when a monitored metric stops improving, crosses a threshold, or is not finite."""

from __future__ import annotations

import enum
import math
from typing import Any

import torch

from engineering import Callback, MisconfigurationError


class EarlyStoppingReason(enum.Enum):
    """Why EarlyStopping stopped the run (``EarlyStopping.stopping_reason``); the values are what a
    checkpoint stores, as in Lightning."""

    NOT_STOPPED = 0
    """Training has not been stopped by this callback."""
    STOPPING_THRESHOLD = 1
    """The metric reached ``stopping_threshold``."""
    DIVERGENCE_THRESHOLD = 2
    """The metric went past ``divergence_threshold``."""
    PATIENCE_EXHAUSTED = 3
    """The metric did not improve by more than ``min_delta`` for ``patience`` checks."""
    NON_FINITE_METRIC = 4
    """The metric was NaN or infinite (with ``check_finite=True``)."""


class EarlyStopping(Callback):
    """Set ``trainer.should_stop`` when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` checks, reached ``stopping_threshold``, passed ``divergence_threshold``, or is NaN/inf.

    A check runs at the end of each training epoch when validation runs once per epoch (the default),
    else after each validation; ``check_on_train_epoch_end`` forces one or the other. ``strict=True``
    turns a missing metric into an error that lists the metrics that exist. The wait count and best
    score go in checkpoints; why training stopped is printed and kept in ``stopping_reason`` and
    ``stopping_reason_message``.

    Args:
        monitor: The name of a logged metric (``self.log("val_loss", ...)``).
        min_delta: The least change that counts as an improvement (its sign is ignored).
        patience: How many checks without improvement stop training.
        verbose: Also print what a check found when it does not stop training (a stop is always printed).
        mode: ``"min"`` when lower is better, ``"max"`` when higher is.
        strict: Raise when ``monitor`` was not logged; with ``False`` the check is skipped while it is missing.
        check_finite: Stop when the metric is NaN or infinite.
        stopping_threshold: Stop as soon as the metric is this good.
        divergence_threshold: Stop as soon as the metric is worse than this.
        check_on_train_epoch_end: Check at the end of the training epoch (``True``) or after each
            validation (``False``); ``None`` picks the first when validation runs once per epoch.

    Raises:
        MisconfigurationError: ``mode`` is not ``"min"``/``"max"``, or ``patience`` is not an int >= 0.
        RuntimeError: With ``strict=True``, a check finds no ``monitor`` metric; the message lists the
            metrics that were logged.

    Example:
        ```python
        trainer = Trainer(callbacks=[EarlyStopping(monitor="val_loss", patience=5)])
        ```
    """

    is_monitor = True  # its on_train_epoch_end runs after the module's, so it sees what the module logged there

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
    ) -> None:
        if mode not in ("min", "max"):
            raise MisconfigurationError(f"EarlyStopping(mode={mode!r}) is not supported; use 'min' or 'max'.")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise MisconfigurationError(f"EarlyStopping(patience={patience!r}) must be an int >= 0.")
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.check_on_train_epoch_end = check_on_train_epoch_end
        self._check_at_epoch_end = bool(check_on_train_epoch_end)
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score = torch.tensor(math.inf if mode == "min" else -math.inf)
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": self.best_score,
            "patience": self.patience,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = torch.as_tensor(state_dict["best_score"])
        self.patience = state_dict["patience"]
        self.stopping_reason = EarlyStoppingReason(state_dict.get("stopping_reason", 0))
        self.stopping_reason_message = state_dict.get("stopping_reason_message")

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._check_at_epoch_end = self.check_on_train_epoch_end
        if self._check_at_epoch_end is None:
            # Validation more often than once per epoch, or less: check after each validation instead.
            self._check_at_epoch_end = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._check_at_epoch_end and self._checking(trainer):
            self._check(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not self._check_at_epoch_end and self._checking(trainer):
            self._check(trainer)

    @staticmethod
    def _checking(trainer: Any) -> bool:
        return trainer.state.fn == "fit" and not trainer.sanity_checking and not trainer.fast_dev_run

    def _check(self, trainer: Any) -> None:
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            message = (
                f"EarlyStopping(monitor={self.monitor!r}) found no metric of that name. Available metrics: "
                f"{', '.join(sorted(metrics)) or 'none were logged'}. Log it with self.log({self.monitor!r}, ...), "
                "monitor one of those, or pass strict=False to skip the check while it is missing."
            )
            if self.strict:
                raise RuntimeError(message)
            if self.verbose and trainer.is_global_zero:
                print(message)
            return
        current = torch.as_tensor(metrics[self.monitor]).detach().squeeze().cpu()
        should_stop, message = self._evaluate(current)
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)  # one rank stops all
        if should_stop:
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = message
        if message and (should_stop or self.verbose) and trainer.is_global_zero:
            print(message)

    def _evaluate(self, current: torch.Tensor) -> tuple[bool, str | None]:
        """(whether to stop, what to say); updates the best score and the wait count."""
        better = torch.lt if self.mode == "min" else torch.gt
        sign = "<" if self.mode == "min" else ">"
        if self.check_finite and not torch.isfinite(current):
            self.stopping_reason = EarlyStoppingReason.NON_FINITE_METRIC
            return True, (f"EarlyStopping: {self.monitor} = {current.item()} is not finite (best so far "
                          f"{self.best_score.item():.4g}). Stopping.")
        if self.stopping_threshold is not None and better(current, self.stopping_threshold):
            self.stopping_reason = EarlyStoppingReason.STOPPING_THRESHOLD
            return True, (f"EarlyStopping: {self.monitor} = {current.item():.4g} {sign} stopping_threshold "
                          f"{self.stopping_threshold}. Stopping.")
        if self.divergence_threshold is not None and better(torch.tensor(self.divergence_threshold), current):
            self.stopping_reason = EarlyStoppingReason.DIVERGENCE_THRESHOLD
            return True, (f"EarlyStopping: {self.monitor} = {current.item():.4g} is past divergence_threshold "
                          f"{self.divergence_threshold}. Stopping.")
        margin = -self.min_delta if self.mode == "min" else self.min_delta
        if better(current, self.best_score + margin):
            previous, self.best_score, self.wait_count = self.best_score, current, 0
            gain = f" by {abs(previous - current).item():.4g}" if torch.isfinite(previous) else ""
            return False, f"EarlyStopping: {self.monitor} improved{gain} to {current.item():.4g}."
        self.wait_count += 1
        if self.wait_count >= self.patience:
            self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
            return True, (f"EarlyStopping: {self.monitor} did not improve by more than {self.min_delta} in the "
                          f"last {self.wait_count} checks (best {self.best_score.item():.4g}). Stopping.")
        return False, None
