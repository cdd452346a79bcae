"""RichProgressBar and RichModelSummary: the progress bars and the layer table drawn with ``rich``.

``rich`` is an optional extra (``pip install tribus[rich]``), imported when one of these is built, never by
``import auxiliary``.
"""

from __future__ import annotations

import time

import importlib.util
from dataclasses import dataclass
from typing import Any

from auxiliary.model_summary import ModelSummary, abbreviated
from auxiliary.progress import TQDMProgressBar


def _require_rich(name: str) -> None:
    if importlib.util.find_spec("rich") is None:
        raise ModuleNotFoundError(f"{name} draws with rich, which is not installed: pip install rich "
                                  "(or tribus[rich]), or use the default TQDMProgressBar / ModelSummary.")


@dataclass
class RichProgressBarTheme:
    """Rich styles of the parts of a bar (Lightning's fields)."""

    description: str = ""
    progress_bar: str = "#6206E0"
    progress_bar_finished: str = "#6206E0"
    progress_bar_pulse: str = "#6206E0"
    batch_progress: str = ""
    time: str = "dim"
    processing_speed: str = "dim underline"
    metrics: str = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


class RichProgressBar(TQDMProgressBar):
    """The training, validation, test and predict bars of ``TQDMProgressBar``, drawn by one ``rich`` live
    display on a terminal; off a terminal the same plain lines as ``TQDMProgressBar`` (no escape codes in logs).

    ``console_kwargs`` go to ``rich.console.Console`` (``force_terminal=True`` draws even where the stream is
    not a terminal). ``leave=True`` keeps each epoch's bar.
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = False, theme: RichProgressBarTheme | None = None,
                 console_kwargs: dict[str, Any] | None = None, stream: Any = None,
                 line_interval: float = 10.0, metrics_interval: float = 0.5) -> None:
        _require_rich("RichProgressBar")
        super().__init__(refresh_rate=refresh_rate, leave=leave, stream=stream, line_interval=line_interval,
                         metrics_interval=metrics_interval)
        self.theme = theme if theme is not None else RichProgressBarTheme()
        self.console_kwargs = dict(console_kwargs or {})
        self._progress: Any = None

    @property
    def is_terminal(self) -> bool:
        return bool(self.console_kwargs.get("force_terminal")) or super().is_terminal

    def terminal_bar(self, description: str, count: int | None, nested: bool, leave: bool) -> _RichBar:
        if self._progress is None:
            self._progress = self._start_display()
        return _RichBar(self._progress, description, count, leave, self.theme, self.metrics_interval)

    def _start_display(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        theme = self.theme
        console = Console(**{"file": self.stream, **self.console_kwargs})
        progress = Progress(
            TextColumn("[progress.description]{task.description}", style=theme.description),
            BarColumn(complete_style=theme.progress_bar, finished_style=theme.progress_bar_finished,
                      pulse_style=theme.progress_bar_pulse),
            TextColumn("{task.completed}/{task.fields[total_text]}", style=theme.batch_progress),
            TimeElapsedColumn(), TextColumn("•"), TimeRemainingColumn(),
            TextColumn("{task.fields[speed]}", style=theme.processing_speed),
            TextColumn("{task.fields[metrics]}", style=theme.metrics),
            console=console, auto_refresh=False,
        )
        progress.start()
        return progress

    def _stop_display(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._stop_display()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._stop_display()


class _RichBar:
    """One task of the live display, with the interface the progress-bar callbacks drive."""
    due_at = 0.0  # the count moves at every refresh

    def __init__(self, progress: Any, description: str, total: int | None, leave: bool,
                 theme: RichProgressBarTheme, metrics_interval: float) -> None:
        self.progress, self.total, self.leave, self.theme = progress, total, leave, theme
        self.metrics_interval = metrics_interval
        self.read_at = time.monotonic()
        self.metrics: dict[str, Any] = {}
        self.task = progress.add_task(description, total=total, total_text=_total_text(total), speed="", metrics="")

    def restart(self, description: str, total: float) -> None:
        self.total = None if total == float("inf") else int(total)
        self.progress.reset(self.task, total=self.total, description=description, total_text=_total_text(self.total),
                            metrics="")

    def advance(self, done: int, read_metrics: Any) -> None:
        # The count moves at every call; the metrics (a wait for the device) only every metrics_interval.
        now = time.monotonic()
        if now - self.read_at >= self.metrics_interval or done == self.total:
            self.read_at, self.metrics = now, read_metrics()
        self.show(done, self.metrics)

    def show(self, done: int, metrics: dict[str, Any]) -> None:
        task = self.progress.tasks[self.progress.task_ids.index(self.task)]
        speed = f"{task.speed:.2f}it/s" if task.speed else ""
        shown = self.theme.metrics_text_delimiter.join(
            f"{key}: {value:{self.theme.metrics_format}}" if isinstance(value, float) else f"{key}: {value}"
            for key, value in metrics.items()
        )
        self.progress.update(self.task, completed=done, speed=speed, metrics=shown)
        self.progress.refresh()

    def finish(self, done: int, metrics: dict[str, Any]) -> None:
        self.show(done, metrics)

    def close(self) -> None:
        if not self.leave:
            self.progress.remove_task(self.task)
            self.progress.refresh()


def _total_text(total: int | None) -> str:
    return "?" if total is None else str(total)


class RichModelSummary(ModelSummary):
    """``ModelSummary``'s table and totals, printed as a ``rich`` table when fit starts (on global rank 0).
    ``header_style`` styles the header row."""

    def __init__(self, max_depth: int = 1, header_style: str = "bold magenta") -> None:
        _require_rich("RichModelSummary")
        super().__init__(max_depth=max_depth)
        self.header_style = header_style

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and self.max_depth != 0:
            self.print_summary(pl_module)

    def print_summary(self, module: Any, console: Any = None) -> None:
        """Print the table for ``module`` to ``console`` (a ``rich.console.Console``; stdout by default)."""
        from rich.console import Console
        from rich.table import Table

        summary = self.summarize(module)
        table = Table(header_style=self.header_style)
        example_columns = ["FLOPs", "In sizes", "Out sizes"] if summary.with_example else []
        columns = ["", "Name", "Type", "Params", "Mode"] + example_columns
        for column in columns:
            table.add_column(column, justify="right" if column == "" else "left")
        for index, layer in enumerate(summary.layers):
            sizes = [abbreviated(layer.flops), layer.in_sizes, layer.out_sizes] if summary.with_example else []
            table.add_row(str(index), layer.name, layer.type, abbreviated(layer.parameters), layer.mode, *sizes)
        totals = Table.grid(expand=False)
        totals.add_column(justify="left")
        totals.add_column()
        for value, label in (
            (f"{summary.trainable_parameters:,}", "Trainable params"),
            (f"{summary.non_trainable_parameters:,}", "Non-trainable params"),
            (f"{summary.total_parameters:,}", "Total params"),
            (f"{summary.size_mb:,.3f}", "Total estimated model params size (MB)"),
            (str(summary.modules_in_train_mode), "Modules in train mode"),
            (str(summary.modules_in_eval_mode), "Modules in eval mode"),
        ):
            totals.add_row(f"[bold]{value}[/bold]", f" {label}")
        console = console if console is not None else Console()
        console.print(table)
        console.print(totals)
