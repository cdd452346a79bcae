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


class _Bar:
    """One bar: a tqdm bar on a terminal, else plain lines at most every ``line_interval`` seconds."""

    def __init__(self, description: str, total: float, stream: Any, terminal: bool, position: int,
                 leave: bool, line_interval: float) -> None:
        self.description, self.total, self.stream = description, _total(total), stream
        self.line_interval = line_interval
        self.started = self.last_line = time.monotonic()
        self.done = 0
        self.tqdm: Any = None
        if terminal:
            from tqdm import tqdm

            self.tqdm = tqdm(total=self.total, desc=description, position=position, leave=leave,
                             file=stream, dynamic_ncols=True, smoothing=0)

    def update(self, done: int, metrics: dict[str, Any], final: bool = False) -> None:
        self.done = done
        if self.tqdm is not None:
            self.tqdm.n = done
            self.tqdm.set_postfix(_format(metrics), refresh=False)
            self.tqdm.refresh()
            return
        now = time.monotonic()
        if final or done == self.total or now - self.last_line >= self.line_interval:
            self.last_line = now
            elapsed = now - self.started
            rate = done / elapsed if elapsed > 0 else 0.0
            total = f"/{self.total}" if self.total is not None else ""
            shown = " ".join(f"{key}={value}" for key, value in _format(metrics).items())
            print(f"{self.description} {done}{total} [{elapsed:.0f}s, {rate:.2f}it/s] {shown}".rstrip(),
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


class TQDMProgressBar(ProgressBar):
    """A training bar per epoch and a bar per evaluation: tqdm on a terminal, plain lines elsewhere.

    Refresh work (reading metrics, formatting) happens only every ``refresh_rate`` batches; off a
    terminal a line is printed at most every ``line_interval`` seconds, so logs stay short.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                 stream: Any = None, line_interval: float = 10.0) -> None:
        if refresh_rate < 0:
            raise ValueError(f"refresh_rate={refresh_rate} must be >= 0 (0 disables the bar).")
        self.refresh_rate = refresh_rate
        self.process_position = process_position
        self.leave = leave
        self.line_interval = line_interval
        self._stream = stream
        self._train_bar: _Bar | None = None
        self._eval_bar: _Bar | None = None

    @property
    def stream(self) -> Any:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def _new_bar(self, description: str, total: float, trainer: Any) -> _Bar | None:
        if not self.refresh_rate or not trainer.is_global_zero:
            return None
        return _Bar(description, total, self.stream, self.is_terminal, self.process_position, self.leave,
                    self.line_interval)

    def _advance(self, bar: _Bar | None, batch_idx: int, trainer: Any, pl_module: Any) -> None:
        done = batch_idx + 1
        if bar is not None and (done % self.refresh_rate == 0 or done == bar.total):
            bar.update(done, self.get_metrics(trainer, pl_module))
        elif bar is not None:
            bar.done = done

    def _close_eval_bar(self) -> None:
        if self._eval_bar is not None:
            self._eval_bar.close()
            self._eval_bar = None

    # -- training ---------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self._train_bar is not None:
            self._train_bar.close()
        self._train_bar = self._new_bar(f"Epoch {trainer.current_epoch}", trainer.num_training_batches, trainer)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._advance(self._train_bar, batch_idx, trainer, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._train_bar is not None:  # a last refresh shows the validation metrics too
            self._train_bar.update(trainer.progress.batch_idx, self.get_metrics(trainer, pl_module), final=True)
            self._train_bar.close()
            self._train_bar = None

    # -- evaluation -------------------------------------------------------------------------------
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        label = "Sanity Checking" if trainer.sanity_checking else "Validation"
        counts = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        self._eval_bar = self._new_bar(label, sum(counts), trainer)

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance_eval(batch_idx, trainer, pl_module)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._close_eval_bar()

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_bar = self._new_bar("Testing", sum(trainer.num_test_batches), trainer)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance_eval(batch_idx, trainer, pl_module)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._close_eval_bar()

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_bar = self._new_bar("Predicting", sum(trainer.num_predict_batches), trainer)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance_eval(batch_idx, trainer, pl_module)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._close_eval_bar()

    def _advance_eval(self, batch_idx: int, trainer: Any, pl_module: Any) -> None:
        bar = self._eval_bar
        if bar is None:
            return
        done = bar.done + 1  # batches of several dataloaders add up on one bar
        if done % self.refresh_rate == 0 or done == bar.total:
            bar.update(done, self.get_metrics(trainer, pl_module))
        else:
            bar.done = done

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.on_exception(trainer, pl_module, None)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException | None) -> None:
        self._close_eval_bar()
        if self._train_bar is not None:
            self._train_bar.close()
            self._train_bar = None
