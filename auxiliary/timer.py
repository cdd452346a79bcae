"""Timer: how long each stage has run, and a time budget for training."""

from __future__ import annotations

import datetime
import re
import time
from typing import Any

from engineering import Callback, MisconfigurationError, ignores

# Lightning's RunningStage values, the keys of ``start_time``/``time_elapsed`` and of the saved state.
STAGES = ("train", "sanity_check", "validate", "test", "predict")


class Timer(Callback):
    """Measure the time spent in training, validation and testing; with a ``duration`` ("DD:HH:MM:SS", a
    ``timedelta`` or a dict of ``timedelta`` arguments), stop training once it is spent.

    The budget is checked at ``on_fit_start`` and after each training batch (``interval="step"``) or each
    epoch (``"epoch"``); when spent, ``trainer.should_stop`` is set (rank 0 decides for all). Training time
    is kept in checkpoints, so a resumed run spends only what is left of the budget.
    """

    def __init__(self, duration: str | datetime.timedelta | dict[str, int] | None = None, interval: str = "step",
                 verbose: bool = True) -> None:
        if isinstance(duration, str):
            match = re.fullmatch(r"(\d+):(\d\d):(\d\d):(\d\d)", duration.strip())
            if not match:
                raise MisconfigurationError(
                    f"Timer(duration={duration!r}) is not a duration: write it as 'DD:HH:MM:SS', e.g. '00:12:00:00'."
                )
            days, hours, minutes, seconds = (int(part) for part in match.groups())
            duration = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        elif isinstance(duration, dict):
            duration = datetime.timedelta(**duration)
        if interval not in ("step", "epoch"):
            raise MisconfigurationError(f"Timer(interval={interval!r}) is not supported; use 'step' or 'epoch'.")
        self._duration = duration.total_seconds() if duration is not None else None
        self._interval = interval
        self._verbose = verbose
        self._start_time: dict[str, float | None] = dict.fromkeys(STAGES)
        self._end_time: dict[str, float | None] = dict.fromkeys(STAGES)
        self._offset = 0.0

    def start_time(self, stage: str = "train") -> float | None:
        """When ``stage`` last started (``time.monotonic()``), or None."""
        return self._start_time[_stage(stage)]

    def end_time(self, stage: str = "train") -> float | None:
        return self._end_time[_stage(stage)]

    def time_elapsed(self, stage: str = "train") -> float:
        """Seconds ``stage`` ran (so far, while it runs); training time includes that of the runs it resumed."""
        stage = _stage(stage)
        start, end = self._start_time[stage], self._end_time[stage]
        offset = self._offset if stage == "train" else 0.0
        if start is None:
            return offset
        return (time.monotonic() if end is None else end) - start + offset

    def time_remaining(self, stage: str = "train") -> float | None:
        return None if self._duration is None else self._duration - self.time_elapsed(stage)

    def _start(self, stage: str) -> None:
        self._start_time[stage], self._end_time[stage] = time.monotonic(), None

    def _end(self, stage: str) -> None:
        self._end_time[stage] = time.monotonic()

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._start("train")

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._end("train")

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._start("sanity_check" if trainer.sanity_checking else "validate")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._end("sanity_check" if trainer.sanity_checking else "validate")

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._start("test")

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._end("test")

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._start("predict")

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._end("predict")

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self._duration is not None:
            self._check_time_remaining(trainer)

    @ignores("outputs")
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._interval == "step" and self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._interval == "epoch" and self._duration is not None:
            self._check_time_remaining(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {stage: self.time_elapsed(stage) for stage in STAGES}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = state_dict.get("time_elapsed", {}).get("train", 0.0)

    def _check_time_remaining(self, trainer: Any) -> None:
        spent = trainer.strategy.broadcast(self.time_elapsed() >= self._duration)  # one clock decides for all
        if spent:
            trainer.should_stop = True
            if self._verbose and trainer.is_global_zero:
                elapsed = datetime.timedelta(seconds=int(self.time_elapsed()))
                print(f"Time limit reached. Elapsed time is {elapsed}. Signaling Trainer to stop.")


def _stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"Timer knows the stages {list(STAGES)}, not {stage!r}.")
    return stage
