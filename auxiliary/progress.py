"""Progress bars: a tqdm bar per training epoch and per evaluation, or plain lines when not on a terminal."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from engineering import Callback


class ProgressBar(Callback):
    """The base every progress bar shares; ``get_metrics`` is what a bar shows."""

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        metrics: dict[str, Any] = dict(trainer.progress_bar_metrics)
        version = trainer.logger.version if trainer.logger is not None else None
        if version is not None:
            metrics["v_num"] = version
        return metrics


def _total(count: float) -> int | None:
    return None if math.isinf(count) else int(count)


def _format(metrics: dict[str, Any]) -> dict[str, str]:
    return {key: f"{value:.3g}" if isinstance(value, float) else str(value) for key, value in metrics.items()}


class TQDMProgressBar(ProgressBar):
    """tqdm bars on a terminal; on a pipe or file, one plain line every ``refresh_rate`` batches' worth of time."""

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                 stream: Any = None, line_interval: float = 10.0) -> None:
        if refresh_rate < 0:
            raise ValueError(f"refresh_rate={refresh_rate} must be >= 0 (0 disables the bar).")
        self.refresh_rate = refresh_rate
        self.process_position = process_position
        self.leave = leave
        self.line_interval = line_interval
        self._stream = stream
        self._bar: Any = None
        self._last_line = 0.0

    @property
    def stream(self) -> Any:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    # -- bars ---------------------------------------------------------------------------------
    def _open(self, description: str, total: float, trainer: Any) -> None:
        self._close()
        if not self.refresh_rate or not trainer.is_global_zero:
            return
        self._description, self._total, self._done = description, _total(total), 0
        self._started = self._last_line = time.monotonic()
        if self.is_terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=self._total, desc=description, position=self.process_position,
                             leave=self.leave, file=self.stream, dynamic_ncols=True, smoothing=0)
        else:
            self._bar = "lines"

    def _advance(self, batch_idx: int, trainer: Any, pl_module: Any, final: bool = False) -> None:
        if self._bar is None:
            return
        done = batch_idx + 1
        if not final and done % self.refresh_rate and done != self._total:
            return
        if self._bar == "lines":
            now = time.monotonic()
            if final or now - self._last_line >= self.line_interval or done == self._total:
                self._last_line = now
                self._print_line(done, now, self.get_metrics(trainer, pl_module))
            self._done = done
            return
        self._bar.n = done
        self._bar.set_postfix(_format(self.get_metrics(trainer, pl_module)), refresh=False)
        self._bar.refresh()

    def _print_line(self, done: int, now: float, metrics: dict[str, Any]) -> None:
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        total = f"/{self._total}" if self._total is not None else ""
        shown = " ".join(f"{key}={value}" for key, value in _format(metrics).items())
        print(f"{self._description} {done}{total} [{elapsed:.0f}s, {rate:.2f}it/s] {shown}".rstrip(),
              file=self.stream, flush=True)

    def _close(self) -> None:
        if self._bar is not None and self._bar != "lines":
            self._bar.close()
        self._bar = None

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._open(f"Epoch {trainer.current_epoch}", trainer.num_training_batches, trainer)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._advance(batch_idx, trainer, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._bar is not None and self._description.startswith("Epoch"):
            self._advance(self._done_or(trainer.progress.batch_idx - 1), trainer, pl_module, final=True)
            self._close()

    def _done_or(self, batch_idx: int) -> int:
        return max(batch_idx, 0)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._training_bar_state = (self._bar, getattr(self, "_description", ""))
        self._bar = None
        label = "Sanity Checking" if trainer.sanity_checking else "Validation"
        counts = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        self._open(label, sum(counts), trainer)

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance(batch_idx, trainer, pl_module)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()
        self._bar, self._description = getattr(self, "_training_bar_state", (None, ""))

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._open("Testing", sum(trainer.num_test_batches), trainer)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance(batch_idx, trainer, pl_module)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._open("Predicting", sum(trainer.num_predict_batches), trainer)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance(batch_idx, trainer, pl_module)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close()
