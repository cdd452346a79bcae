"""Progress bars: a tqdm bar per training epoch and per evaluation, or plain lines when not on a terminal."""

from __future__ import annotations

import io
import math
import os
import shutil
import sys
import time
from typing import Any, Callable, Iterator

from engineering import ProgressBar, ignores


class _TqdmReference:
    """A tqdm bar of ``TQDMProgressBar`` by Lightning's name; reading one not open is a ``TypeError`` (Lightning's)."""

    def __init__(self, slot: str, stages: tuple[str, ...]) -> None:
        self.slot, self.stages = slot, stages

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, progress: Any, owner: type) -> Any:
        if progress is None:
            return self
        bar = getattr(progress, self.slot)
        if not isinstance(bar, _TerminalBar) or (self.stages and progress._eval_stage not in self.stages):
            raise TypeError(f"The `{type(progress).__name__}._{self.name}` reference has not been set yet.")
        return bar.tqdm

    def __set__(self, progress: Any, bar: Any) -> None:
        setattr(progress, self.slot, _TerminalBar(bar, progress.stream, progress.metrics_interval))
        if self.stages:
            progress._eval_stage = self.stages[-1]


class TQDMProgressBar(ProgressBar):
    """A training bar per epoch, and validation, sanity-check, test and predict bars.

    On a terminal these are tqdm bars that fit the terminal's width: values show 3 significant digits,
    and when the metrics do not fit, the bar graph and rate make room first, then the elapsed time, and
    then long names are shortened with ``…``, so validation metrics stay visible at 80 columns. When ``stream`` is not a terminal
    (CI, a log file, ``nohup``), each bar prints a plain line with ``n/total``, percent and ETA at most
    every ``line_interval`` seconds, and the training bar one more at the end of each epoch.

    Reading the metrics waits for the device, so a bar reads them at most every ``metrics_interval``
    seconds on a terminal (and once per line off one), with one host transfer for all values.

    Args:
        refresh_rate: Redraw every this many batches; ``0`` turns the bars off.
        process_position: Row offset of this process's bars, for several trainers in one terminal.
        leave: Keep each finished epoch's bar on screen instead of reusing one bar.
        stream: Where the bars go; ``sys.stdout`` when ``None``.
        line_interval: Seconds between two plain lines when ``stream`` is not a terminal.
        metrics_interval: Seconds between two reads of the metrics on a terminal; the count moves every
            ``refresh_rate`` batches regardless.

    Raises:
        ValueError: ``refresh_rate`` is not an int >= 0, or an interval is negative.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                 stream: Any = None, line_interval: float = 10.0, metrics_interval: float = 0.5) -> None:
        if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ValueError(f"refresh_rate={refresh_rate!r} must be an int >= 0 (0 turns the bars off).")
        for name, interval in (("line_interval", line_interval), ("metrics_interval", metrics_interval)):
            if not isinstance(interval, (int, float)) or interval < 0:
                raise ValueError(f"{name}={interval!r} must be a number of seconds >= 0.")
        self.refresh_rate = refresh_rate
        self.process_position, self.leave = process_position, leave
        self.line_interval = line_interval
        self.metrics_interval = metrics_interval
        self._stream = stream
        self._train_bar: _TerminalBar | _LineBar | None = None
        self._eval_bar: _TerminalBar | _LineBar | None = None
        self._eval_done, self._eval_stage = 0, ""
        self._placement: dict[str, Any] = {"desc": "", "total": None, "position": 2 * process_position, "leave": True}

    train_progress_bar = _TqdmReference("_train_bar", ())
    val_progress_bar = _TqdmReference("_eval_bar", ("Sanity Checking", "Validation"))
    test_progress_bar = _TqdmReference("_eval_bar", ("Testing",))
    predict_progress_bar = _TqdmReference("_eval_bar", ("Predicting",))

    @property
    def stream(self) -> Any:
        """The stream the bars write to."""
        return self._stream if self._stream is not None else sys.stdout

    @property
    def is_terminal(self) -> bool:
        """Whether ``stream`` is a terminal (tqdm bars) or not (plain lines)."""
        return bool(getattr(self.stream, "isatty", lambda: False)())

    # -- training ---------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        description = f"Epoch {trainer.current_epoch}"
        if self._train_bar is not None and not isinstance(self._train_bar, _LineBar) and not self.leave:
            self._train_bar.restart(description, trainer.num_training_batches)
            return
        self._close_train_bar()
        self._train_bar = self._open_bar(description, trainer.num_training_batches, trainer, nested=False,
                                         leave=True, last_line=True)

    @ignores("outputs")
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._train_bar is not None and time.monotonic() >= self._train_bar.due_at:  # else nothing is due yet
            self._advance(self._train_bar, batch_idx + 1, lambda: self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._train_bar is not None:  # shows the validation metrics too, which arrived after the last batch
            self._train_bar.finish(trainer.progress.batch_idx, self.get_metrics(trainer, pl_module))
            if self.leave or isinstance(self._train_bar, _LineBar):
                self._close_train_bar()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._close_train_bar()

    # -- evaluation -------------------------------------------------------------------------------
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        sanity = trainer.sanity_checking
        counts = trainer.num_sanity_val_batches if sanity else trainer.num_val_batches
        self._open_eval_bar("Sanity Checking" if sanity else "Validation", counts, trainer,
                            in_fit=trainer.state.fn == "fit")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._advance_eval()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._close_eval_bar(trainer, pl_module)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._open_eval_bar("Testing", trainer.num_test_batches, trainer, in_fit=False)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance_eval()

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._close_eval_bar(trainer, pl_module)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._open_eval_bar("Predicting", trainer.num_predict_batches, trainer, in_fit=False)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._advance_eval()

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
        """The bar drawn on a terminal: the tqdm bar of the ``init_*_tqdm`` method for its stage; a subclass
        draws another, with ``advance``, ``finish``, ``restart`` and ``close`` as ``_TerminalBar`` has them."""
        # Lightning's layout: two rows per process, the validation bar under the training bar.
        self._placement = {"desc": description, "total": count, "position": 2 * self.process_position + int(nested),
                           "leave": leave}
        init = {"Sanity Checking": self.init_sanity_tqdm, "Validation": self.init_validation_tqdm,
                "Testing": self.init_test_tqdm, "Predicting": self.init_predict_tqdm}.get(description, self.init_train_tqdm)
        bar = init()
        if bar.total != count:  # a bar the user built knows neither
            bar.reset(total=count)
        if bar.desc != description:
            bar.set_description_str(description, refresh=False)
        return _TerminalBar(bar, self.stream, self.metrics_interval)

    def init_train_tqdm(self) -> Any:
        """The tqdm bar for training; override it to customise the bar (its total and description are set after)."""
        return self._tqdm()

    def init_sanity_tqdm(self) -> Any:
        """The tqdm bar for the sanity check."""
        return self._tqdm()

    def init_validation_tqdm(self) -> Any:
        """The tqdm bar for validation (under the training bar during fit)."""
        return self._tqdm()

    def init_test_tqdm(self) -> Any:
        """The tqdm bar for testing."""
        return self._tqdm()

    def init_predict_tqdm(self) -> Any:
        """The tqdm bar for predicting."""
        return self._tqdm()

    def _tqdm(self) -> Any:
        from tqdm import tqdm

        # The width is set by the bar's layout, not tqdm's dynamic_ncols, which cannot see COLUMNS.
        return tqdm(file=self.stream, smoothing=0, **self._placement)

    def _advance(self, bar: _TerminalBar | _LineBar | None, done: int, read_metrics: Callable[[], dict]) -> None:
        if bar is None or (done % self.refresh_rate and done != bar.total) or time.monotonic() < bar.due_at:
            return
        bar.advance(done, read_metrics)

    def _open_eval_bar(self, description: str, counts: list[float], trainer: Any, in_fit: bool) -> None:
        # During fit the bar is transient: the epoch's bar (or line) shows the validation metrics after it.
        self._eval_done, self._eval_stage = 0, description
        nested = in_fit and not trainer.sanity_checking
        self._eval_bar = self._open_bar(description, sum(counts), trainer, nested=nested, leave=not in_fit,
                                        last_line=not in_fit)

    def _advance_eval(self) -> None:
        # Batches of several dataloaders add up on one bar; its metrics come once, when it finishes.
        self._eval_done += 1
        self._advance(self._eval_bar, self._eval_done, dict)

    def _close_eval_bar(self, trainer: Any, pl_module: Any) -> None:
        if self._eval_bar is not None:
            metrics = {} if trainer.state.fn == "fit" else self.get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)  # the version belongs to the training run, not to an evaluation
            self._eval_bar.finish(self._eval_done, metrics)
            self._eval_bar.close()
            self._eval_bar = None

    def _close_train_bar(self) -> None:
        if self._train_bar is not None:
            self._train_bar.close()
            self._train_bar = None

    def _close_all(self) -> None:
        for bar in (self._eval_bar, self._train_bar):
            if bar is not None:
                bar.close()
        self._eval_bar = self._train_bar = None


# tqdm's layout, then narrower ones for metrics that do not fit (no bar and rate; then metrics apart by a space).
_FULL_LAYOUT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
_COMPACT_LAYOUT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
_TIGHT_LAYOUT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} <{remaining}{postfix}"
_KNOWN_TOTAL_LAYOUTS = [(_FULL_LAYOUT, ", "), (_COMPACT_LAYOUT, ", "), (_TIGHT_LAYOUT, " ")]
_UNKNOWN_TOTAL_LAYOUTS = [(None, ", ")]  # tqdm's own: count, elapsed time and rate
_SHORTEST_NAME = 4
_ALWAYS_WHOLE = 5  # names this short, like ``v_num``, are never cut
# Room left for the elapsed time and rate to grow by a digit between two reads of the metrics.
_GROWTH_MARGIN = 2


class _TerminalBar:
    """A tqdm bar whose metrics fit the terminal; tqdm is imported only when a terminal shows one."""
    due_at = 0.0  # the count moves at every refresh

    def __init__(self, bar: Any, stream: Any, metrics_interval: float) -> None:
        self.tqdm = bar
        self.total = bar.total
        self.stream = stream
        self.metrics_interval = metrics_interval
        self.read_at = time.monotonic()

    def restart(self, description: str, total: float) -> None:
        self.total = None if math.isinf(total) else int(total)
        self.tqdm.reset()
        self.tqdm.total = self.total  # reset(total=None) would keep the previous epoch's total
        self.tqdm.set_description_str(description, refresh=False)  # as the constructor keeps it: no ": "

    def advance(self, done: int, read_metrics: Callable[[], dict[str, Any]]) -> None:
        # The count moves at every call; the metrics (a wait for the device) only every metrics_interval.
        self.tqdm.n = done
        now = time.monotonic()
        if now - self.read_at >= self.metrics_interval or done == self.total:
            self.read_at = now
            self._lay_out(read_metrics())
        self.tqdm.refresh()

    def finish(self, done: int, metrics: dict[str, Any]) -> None:
        self.tqdm.n = done
        self._lay_out(metrics)
        self.tqdm.refresh()

    def close(self) -> None:
        self.tqdm.close()

    def _lay_out(self, metrics: dict[str, Any]) -> None:
        # Only when the metrics change, not at every redraw: measuring the line costs a few tqdm formats.
        bar = self.tqdm
        bar.ncols = _columns(self.stream) - 1  # as tqdm does: the last column would wrap on some terminals
        bar.bar_format, bar.postfix = self._fitting_layout(bar.ncols, list(_formatted(metrics).items()))

    def _fitting_layout(self, width: int, metrics: list[tuple[str, str]]) -> tuple[str | None, str]:
        """The first layout whose line fits ``width`` columns with whole metric names; failing that, the
        narrowest layout with names shortened until the line fits (tqdm cuts what still does not)."""
        layouts = _KNOWN_TOTAL_LAYOUTS if self.total is not None else _UNKNOWN_TOTAL_LAYOUTS
        for layout, separator in layouts:
            whole = _joined(metrics, separator)
            if len(whole) <= width - self._fixed_width(layout):
                return layout, whole
        budget = width - self._fixed_width(layout)
        postfix = whole
        for postfix in _shortenings(metrics, separator):
            if len(postfix) <= budget:
                break
        return layout, postfix

    def _fixed_width(self, layout: str | None) -> int:
        """Columns the line takes besides the metrics, counting the bar graph as one column."""
        line = self.tqdm.format_meter(**{**self.tqdm.format_dict, "ncols": None, "bar_format": layout,
                                         "postfix": None})
        bar_graph = 10 if layout == _FULL_LAYOUT else 0  # tqdm draws 10 columns when given no width
        return len(line) - bar_graph + (layout == _FULL_LAYOUT) + len(", ") + _GROWTH_MARGIN


class _LineBar:
    """Plain lines, at most one every ``interval`` seconds, plus a closing one when ``last_line`` is set. Every
    batch tests ``due_at``: until then a line costs no further call."""

    def __init__(self, description: str, total: int | None, stream: Any, interval: float, last_line: bool) -> None:
        self.description, self.total, self.stream = description, total, stream
        self.interval, self.last_line = interval, last_line
        self.started = time.monotonic()
        self.due_at = self.started + interval  # the next line's time

    def advance(self, done: int, read_metrics: Callable[[], dict[str, Any]]) -> None:
        self._print(done, read_metrics())  # only when due: metrics are read only for a printed line

    def finish(self, done: int, metrics: dict[str, Any]) -> None:
        if self.last_line:
            self._print(done, metrics)

    def close(self) -> None: ...

    def _print(self, done: int, metrics: dict[str, Any]) -> None:
        self.due_at = (now := time.monotonic()) + self.interval
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        timing = [f"{rate:.2f}it/s" if rate else "?it/s"]
        if self.total is not None:
            percent = 100 * done // self.total if self.total else 100
            remaining = _clock((self.total - done) / rate) if rate else "?"
            timing = [f"{percent}%", f"{_clock(elapsed)}<{remaining}"] + timing
            count = f"{done}/{self.total}"
        else:
            timing = [_clock(elapsed)] + timing
            count = str(done)
        shown = " ".join(f"{key}={value}" for key, value in _formatted(metrics).items())
        print(f"{self.description}: {count} [{', '.join(timing)}] {shown}".rstrip(), file=self.stream, flush=True)


def _columns(stream: Any) -> int:
    """The width of the terminal ``stream`` writes to; ``COLUMNS`` (or 80) when it cannot say."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return shutil.get_terminal_size().columns


def _joined(metrics: list[tuple[str, str]], separator: str) -> str:
    return separator.join(f"{name}={value}" for name, value in metrics)


def _shortenings(metrics: list[tuple[str, str]], separator: str) -> Iterator[str]:
    """The metrics joined with ever shorter names: first cut at the end (``val_accuracy`` → ``val_ac…``),
    then in the middle (``val…cy``), never below 4 characters nor so far that two names read the same."""
    longest = max((len(name) for name, _ in metrics), default=0)
    for shorten in (_cut_at_end, _cut_in_middle):
        for limit in range(longest - 1, _SHORTEST_NAME - 1, -1):
            names = [shorten(name, limit) if len(name) > max(limit, _ALWAYS_WHOLE) else name for name, _ in metrics]
            if len(set(names)) < len(names):
                break
            yield _joined([(name, value) for name, (_, value) in zip(names, metrics)], separator)


def _cut_at_end(name: str, limit: int) -> str:
    return name[:limit - 1] + "…"


def _cut_in_middle(name: str, limit: int) -> str:
    tail = (limit - 1) // 2
    return name[:limit - 1 - tail] + "…" + name[-tail:]


def _formatted(metrics: dict[str, Any]) -> dict[str, str]:
    return {key: f"{value:.3g}" if isinstance(value, float) else str(value) for key, value in metrics.items()}


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"
