"""Progress bars: a tqdm bar per training epoch and per evaluation, or plain lines when not on a terminal."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from engineering import Callback


class ProgressBar(Callback):
    """The base every progress bar shares; ``get_metrics`` is what a bar shows next to the count."""

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        """``v_num`` (the logger's version), then every metric logged with ``prog_bar=True``."""
        metrics: dict[str, Any] = {}
        version = trainer.logger.version if trainer.logger is not None else None
        if version is not None:
            metrics["v_num"] = version
        metrics.update(trainer.progress_bar_metrics)
        return metrics


class TQDMProgressBar(ProgressBar):
    """A training bar per epoch, and validation, sanity-check, test and predict bars.

    On a terminal these are tqdm bars. When ``stream`` (stdout by default) is not a terminal (CI, a log
    file, ``nohup``), each bar prints a plain line at most every ``line_interval`` seconds, and the
    training bar one more at the end of each epoch. Bars refresh only every ``refresh_rate`` batches;
    ``refresh_rate=0`` turns them off. ``leave=True`` keeps each finished epoch's bar on screen.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                 stream: Any = None, line_interval: float = 10.0) -> None:
        if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ValueError(f"refresh_rate={refresh_rate!r} must be an int >= 0 (0 turns the bars off).")
        self.refresh_rate = refresh_rate
        self.process_position = process_position
        self.leave = leave
        self.line_interval = line_interval
        self._stream = stream
        self._train_bar: _TerminalBar | _LineBar | None = None
        self._eval_bar: _TerminalBar | _LineBar | None = None
        self._eval_done = 0
        self._loss: Any = None

    @property
    def stream(self) -> Any:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        """The base metrics, with the last training loss after ``v_num`` unless the module logs its own."""
        metrics = super().get_metrics(trainer, pl_module)
        if self._loss is not None and "loss" not in metrics:
            version = {"v_num": metrics.pop("v_num")} if "v_num" in metrics else {}
            metrics = {**version, "loss": float(self._loss), **metrics}
        return metrics

    # -- training ---------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        description = f"Epoch {trainer.current_epoch}"
        self._loss = None
        if self._train_bar is not None and not isinstance(self._train_bar, _LineBar) and not self.leave:
            self._train_bar.restart(description, trainer.num_training_batches)
            return
        self._close_train_bar()
        self._train_bar = self._open_bar(description, trainer.num_training_batches, trainer, nested=False,
                                         leave=True, last_line=True)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._loss = outputs.get("loss") if isinstance(outputs, dict) else None
        self._advance(self._train_bar, batch_idx + 1, trainer, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._train_bar is not None:  # shows the validation metrics too, which arrived after the last batch
            self._train_bar.finish(trainer.progress.batch_idx, self.get_metrics(trainer, pl_module))
            if self.leave or isinstance(self._train_bar, _LineBar):
                self._close_train_bar()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._loss = None  # evaluation bars after training show their own metrics, not a stale loss
        self._close_train_bar()

    # -- evaluation -------------------------------------------------------------------------------
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        sanity = trainer.sanity_checking
        counts = trainer.num_sanity_val_batches if sanity else trainer.num_val_batches
        self._open_eval_bar("Sanity Checking" if sanity else "Validation", counts, trainer,
                            in_fit=trainer.stage == "fit")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance_eval(trainer, pl_module)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._close_eval_bar(trainer, pl_module)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._open_eval_bar("Testing", trainer.num_test_batches, trainer, in_fit=False)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance_eval(trainer, pl_module)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._close_eval_bar(trainer, pl_module)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._open_eval_bar("Predicting", trainer.num_predict_batches, trainer, in_fit=False)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance_eval(trainer, pl_module)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._close_eval_bar(trainer, pl_module)

    # -- always closed, also after an error -------------------------------------------------------
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close_all()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._close_all()

    # -- internals --------------------------------------------------------------------------------
    def _open_bar(self, description: str, total: float, trainer: Any, nested: bool, leave: bool,
                  last_line: bool) -> _TerminalBar | _LineBar | None:
        if not self.refresh_rate or not trainer.is_global_zero:
            return None
        count = None if math.isinf(total) else int(total)
        if self.is_terminal:
            return self.terminal_bar(description, count, nested, leave)
        return _LineBar(description, count, self.stream, self.line_interval, last_line)

    def terminal_bar(self, description: str, count: int | None, nested: bool, leave: bool) -> Any:
        """The bar drawn on a terminal (a tqdm bar); a subclass draws another, with ``due``, ``show``, ``finish``,
        ``restart`` and ``close`` as ``_TerminalBar`` has them."""
        # Lightning's layout: two rows per process, the validation bar under the training bar.
        position = 2 * self.process_position + int(nested)
        return _TerminalBar(description, count, self.stream, position, leave=leave)

    def _advance(self, bar: _TerminalBar | _LineBar | None, done: int, trainer: Any, pl_module: Any,
                 with_metrics: bool = True) -> None:
        if bar is None or (done % self.refresh_rate and done != bar.total):
            return
        if bar.due(done):  # off a terminal, reading metrics (a device sync) only when a line is printed
            bar.show(done, self.get_metrics(trainer, pl_module) if with_metrics else {})

    def _open_eval_bar(self, description: str, counts: list[float], trainer: Any, in_fit: bool) -> None:
        # During fit the bar is transient: the epoch's bar (or line) shows the validation metrics after it.
        self._eval_done = 0
        nested = in_fit and not trainer.sanity_checking
        self._eval_bar = self._open_bar(description, sum(counts), trainer, nested=nested, leave=not in_fit,
                                        last_line=not in_fit)

    def _advance_eval(self, trainer: Any, pl_module: Any) -> None:
        # Batches of several dataloaders add up on one bar; its metrics come once, when it finishes.
        self._eval_done += 1
        self._advance(self._eval_bar, self._eval_done, trainer, pl_module, with_metrics=False)

    def _close_eval_bar(self, trainer: Any, pl_module: Any) -> None:
        if self._eval_bar is not None:
            in_fit = trainer.stage == "fit"
            self._eval_bar.finish(self._eval_done, {} if in_fit else self.get_metrics(trainer, pl_module))
            self._eval_bar.close()
            self._eval_bar = None

    def _close_train_bar(self) -> None:
        if self._train_bar is not None:
            self._train_bar.close()
            self._train_bar = None

    def _close_all(self) -> None:
        if self._eval_bar is not None:
            self._eval_bar.close()
            self._eval_bar = None
        self._close_train_bar()


class _TerminalBar:
    """A tqdm bar; tqdm is imported only when a terminal shows one."""

    def __init__(self, description: str, total: int | None, stream: Any, position: int, leave: bool) -> None:
        from tqdm import tqdm

        self.total = total
        self.tqdm = tqdm(total=total, desc=description, position=position, leave=leave, file=stream,
                         dynamic_ncols=True, smoothing=0)

    def restart(self, description: str, total: float) -> None:
        self.total = None if math.isinf(total) else int(total)
        self.tqdm.reset()
        self.tqdm.total = self.total  # reset(total=None) would keep the previous epoch's total
        self.tqdm.set_description(description, refresh=False)

    def due(self, done: int) -> bool:
        return True

    def show(self, done: int, metrics: dict[str, Any]) -> None:
        self.tqdm.n = done
        self.tqdm.set_postfix(_formatted(metrics), refresh=False)
        self.tqdm.refresh()

    def finish(self, done: int, metrics: dict[str, Any]) -> None:
        self.show(done, metrics)

    def close(self) -> None:
        self.tqdm.close()


class _LineBar:
    """Plain lines, at most one every ``interval`` seconds, plus a closing one when ``last_line`` is set."""

    def __init__(self, description: str, total: int | None, stream: Any, interval: float, last_line: bool) -> None:
        self.description, self.total, self.stream = description, total, stream
        self.interval, self.last_line = interval, last_line
        self.started = self.printed_at = time.monotonic()

    def due(self, done: int) -> bool:
        return time.monotonic() - self.printed_at >= self.interval

    def show(self, done: int, metrics: dict[str, Any]) -> None:
        now = self.printed_at = time.monotonic()
        elapsed = now - self.started
        rate = f"{done / elapsed:.2f}it/s" if elapsed > 0 else "?it/s"
        total = f"/{self.total}" if self.total is not None else ""
        shown = " ".join(f"{key}={value}" for key, value in _formatted(metrics).items())
        print(f"{self.description}: {done}{total} [{_clock(elapsed)}, {rate}] {shown}".rstrip(),
              file=self.stream, flush=True)

    def finish(self, done: int, metrics: dict[str, Any]) -> None:
        if self.last_line:
            self.show(done, metrics)

    def close(self) -> None: ...


def _formatted(metrics: dict[str, Any]) -> dict[str, str]:
    return {key: f"{value:.3g}" if isinstance(value, float) else str(value) for key, value in metrics.items()}


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"
