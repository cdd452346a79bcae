"""SpikeDetection: stop training at a loss spike, and write down which batches to skip when resuming."""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Mapping
from typing import Any

import torch

from engineering import Callback, MisconfigurationError


class TrainingSpikeException(RuntimeError):
    """Raised by SpikeDetection when the training loss spiked; ``batch_idx`` says where."""

    def __init__(self, batch_idx: int) -> None:
        super().__init__(f"Training spike detected in batch {batch_idx}")
        self.batch_idx = batch_idx


class SpikeDetection(Callback):
    """Raise ``TrainingSpikeException`` when the training loss of a batch (from ``warmup`` on within the epoch)
    is a spike: worse than the previous loss, and off the running mean of the last ``window`` losses by at
    least ``atol`` and by at least ``rtol`` times that mean (a None tolerance always passes). With
    ``finite_only`` a NaN or inf loss is a spike too; without it, non-finite losses are left out of the mean.

    Before raising, global rank 0 writes the batch and the one before it (which may have corrupted the weights)
    to ``exclude_batches_path`` (default ``<default_root_dir>/skip_batches.json``). Any rank's spike stops all.
    """

    def __init__(self, mode: str = "min", window: int = 10, warmup: int = 1, atol: float | None = None,
                 rtol: float | None = 2.0, exclude_batches_path: str | os.PathLike | None = None,
                 finite_only: bool = True) -> None:
        if mode not in ("min", "max"):
            raise MisconfigurationError(f"SpikeDetection(mode={mode!r}): use 'min' or 'max'.")
        if window < 1:
            raise MisconfigurationError(f"SpikeDetection(window={window}) must be at least 1.")
        self.mode = mode
        self.window = window
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.exclude_batches_path = None if exclude_batches_path is None else os.fspath(exclude_batches_path)
        self.finite_only = finite_only
        self.last_val = 0.0
        self.recent: deque[float] = deque(maxlen=window)
        self.bad_batches: list[int] = []

    @torch.no_grad()
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if isinstance(outputs, torch.Tensor):
            loss = float(outputs)
        elif isinstance(outputs, Mapping) and outputs.get("loss") is not None:
            loss = float(outputs["loss"])
        else:
            raise TypeError(f"SpikeDetection needs training_step to return the loss (a tensor or a dict with "
                            f"'loss'); it returned {type(outputs).__qualname__}.")
        spiked = batch_idx >= self.warmup and self._is_spike(loss)
        if trainer.strategy.reduce_boolean_decision(spiked, all=False):  # one rank's spike stops every rank
            self._handle_spike(trainer, batch_idx)
        finite = self.finite_only or trainer.strategy.reduce_boolean_decision(math.isfinite(loss), all=True)
        if finite:
            self.recent.append(loss)
            self.last_val = loss

    def _is_spike(self, loss: float) -> bool:
        if self.finite_only and not math.isfinite(loss):
            return True
        change = loss - self.last_val
        if (change <= 0) if self.mode == "min" else (change >= 0):
            return False  # an improvement is never a spike
        mean = sum(self.recent) / len(self.recent) if self.recent else math.nan
        off_absolute = self.atol is None or abs(loss - mean) >= abs(self.atol)
        off_relative = self.rtol is None or abs(loss - mean) >= abs(self.rtol * mean)
        return off_absolute and off_relative

    def _handle_spike(self, trainer: Any, batch_idx: int) -> None:
        self.bad_batches.extend([batch_idx - 1, batch_idx])
        path = self.exclude_batches_path or trainer.default_root_dir
        if not path.endswith(".json"):
            path = os.path.join(path, "skip_batches.json")
        if trainer.is_global_zero:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as file:
                json.dump(self.bad_batches, file, indent=4)
        raise TrainingSpikeException(batch_idx)

    def state_dict(self) -> dict[str, Any]:
        return {"last_val": self.last_val, "recent": list(self.recent), "bad_batches": list(self.bad_batches)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_val = state_dict["last_val"]
        self.recent = deque(state_dict["recent"], maxlen=self.window)
        self.bad_batches = list(state_dict["bad_batches"])
