"""Profilers: time per action (simple), cProfile per action (advanced), torch.profiler (pytorch).

``Trainer(profiler="simple" | "advanced" | "pytorch")`` finds these through the ``tribus.profilers``
entry points. The loops profile their actions (``training_step``, ``backward``, ``optimizer_step``,
``validation``, …) and the Trainer wraps every bus receiver as an action of its own name
(``[Callback]EarlyStopping.on_validation_end``), so a slow subscriber is visible by name. At the end of
each run the report is printed, or appended to ``dirpath/<stage>-<filename>.txt`` when ``filename`` is
given (``dirpath`` defaults to the Trainer's ``log_dir``).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time
from collections import defaultdict
from typing import Any

from auxiliary.ranks import global_rank
from engineering import Profiler


class ReportingProfiler(Profiler):
    """What the profilers share: the run's stage, and where the report goes."""

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None) -> None:
        super().__init__(dirpath=os.fspath(dirpath) if dirpath is not None else None, filename=filename)
        self.stage: str | None = None
        self._log_dir: str | None = None

    def setup(self, stage: str, log_dir: str | None) -> None:
        self.stage = stage
        self._log_dir = log_dir

    @property
    def output_dir(self) -> str:
        return self.dirpath or self._log_dir or os.getcwd()

    def output_path(self, suffix: str = ".txt") -> str:
        """``<dir>/<stage>-<filename>[-<rank>]<suffix>``; ranks other than 0 get their own file."""
        rank = global_rank()
        parts = [self.stage, self.filename or type(self).__name__.lower(), str(rank) if rank else None]
        return os.path.join(self.output_dir, "-".join(part for part in parts if part) + suffix)

    def describe(self) -> None:
        """Print the summary (global rank 0), or append it to the report file when ``filename`` is set."""
        summary = self.summary()
        if not summary:
            return
        if self.filename:
            path = self.output_path()
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a") as file:
                file.write(summary + "\n")
        elif global_rank() == 0:
            print(summary)

    def _title(self) -> str:
        return f"{(self.stage or '').upper()} Profiler Report".strip()


class SimpleProfiler(ReportingProfiler):
    """Count, mean and total wall time per action, and its share of the run; slowest actions first.

    ``extended=False`` leaves out the count and percentage columns. Starting an action that is already
    running is an error: each action is timed once at a time. ``recorded_durations`` maps each action to
    the seconds of each of its calls in the current (or last) run.

    Args:
        dirpath: Where the report goes; the logger's ``log_dir`` when ``None`` (the working directory
            without a logger).
        filename: Write the report to ``<dirpath>/<stage>-<filename>.txt`` (ranks other than 0 add
            ``-<rank>``) instead of printing it on rank 0.
        extended: Show the number of calls and each action's share of the run.

    Example:
        ```python
        trainer = Trainer(profiler=SimpleProfiler(filename="perf"))  # or profiler="simple"
        ```
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None,
                 extended: bool = True) -> None:
        super().__init__(dirpath, filename)
        self.extended = extended
        self._running: dict[str, float] = {}
        self.recorded_durations: defaultdict[str, list[float]] = defaultdict(list)  # action → seconds of each call
        self._started = time.perf_counter()

    def setup(self, stage: str, log_dir: str | None) -> None:
        super().setup(stage, log_dir)
        self._running.clear()
        self.recorded_durations.clear()
        self._started = time.perf_counter()

    def start(self, action: str) -> None:
        if action in self._running:
            raise ValueError(f"SimpleProfiler: {action!r} started while already running; stop it first.")
        self._running[action] = time.perf_counter()

    def stop(self, action: str) -> None:
        ended = time.perf_counter()
        started = self._running.pop(action, None)
        if started is None:
            raise ValueError(f"SimpleProfiler: {action!r} stopped but never started; call start({action!r}) first.")
        self.recorded_durations[action].append(ended - started)

    def durations(self) -> dict[str, tuple[int, float]]:
        """What was measured so far in this run.

        Returns:
            ``{action: (calls, total seconds)}``, e.g. ``{"data_fetch": (100, 0.31)}``.
        """
        return {action: (len(durations), sum(durations)) for action, durations in self.recorded_durations.items()}

    def summary(self) -> str:
        """The report: a table of actions, slowest total first; ``""`` when nothing was measured."""
        if not self.recorded_durations:
            return ""
        elapsed = time.perf_counter() - self._started
        header = ["Action", "Mean duration (s)", "Total time (s)"]
        if self.extended:
            header = ["Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]
        rows = []
        for action, (calls, total) in sorted(self.durations().items(), key=lambda item: -item[1][1]):
            row = [action, f"{total / calls:.5g}", f"{total:.5g}"]
            if self.extended:
                row = [action, f"{total / calls:.5g}", str(calls), f"{total:.5g}", f"{100 * total / elapsed:.3g}"]
            rows.append(row)
        if self.extended:
            calls = sum(len(durations) for durations in self.recorded_durations.values())
            rows.insert(0, ["Total", "-", f"{calls}", f"{elapsed:.5g}", "100"])
        widths = [max(len(row[column]) for row in [header] + rows) for column in range(len(header))]
        rule = "-" * (sum(widths) + 3 * (len(widths) - 1))
        lines = [self._title(), rule, " | ".join(cell.ljust(width) for cell, width in zip(header, widths)), rule]
        lines += [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
        return "\n".join(lines + [rule])


class AdvancedProfiler(ReportingProfiler):
    """A cProfile per action; the report lists each action's top functions by cumulative time.

    ``line_count_restriction`` is how many functions per action (an int), or a fraction of them (a float
    in (0, 1]). ``dump_stats=True`` also writes each action's raw ``.prof`` file next to the report.
    ``profiled_actions`` maps each action to its ``cProfile.Profile``.

    Args:
        dirpath: Where the report goes; the logger's ``log_dir`` when ``None`` (the working directory
            without a logger).
        filename: Write the report to ``<dirpath>/<stage>-<filename>.txt`` (ranks other than 0 add
            ``-<rank>``) instead of printing it on rank 0.
        line_count_restriction: Functions listed per action: a count, or a fraction in (0, 1].
        dump_stats: Also write each action's ``pstats`` file (``<action>.prof``) next to the report.
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None,
                 line_count_restriction: float = 20, dump_stats: bool = False) -> None:
        super().__init__(dirpath, filename)
        self.line_count_restriction = line_count_restriction
        self.dump_stats = dump_stats
        self.profiled_actions: dict[str, cProfile.Profile] = {}  # kept until the next run starts
        self._stack: list[cProfile.Profile] = []

    def setup(self, stage: str, log_dir: str | None) -> None:
        super().setup(stage, log_dir)
        self.profiled_actions.clear()

    def start(self, action: str) -> None:
        # One cProfile runs at a time: the outer action pauses while an inner one is measured.
        if self._stack:
            self._stack[-1].disable()
        profile = self.profiled_actions.get(action)
        if profile is None:
            profile = self.profiled_actions[action] = cProfile.Profile()
        self._stack.append(profile)
        profile.enable()

    def stop(self, action: str) -> None:
        profile = self.profiled_actions.get(action)
        if profile is None or profile not in self._stack:
            raise ValueError(f"AdvancedProfiler: {action!r} stopped but never started; call start({action!r}) first.")
        profile.disable()
        self._stack.remove(profile)
        if self._stack:
            self._stack[-1].enable()

    def summary(self) -> str:
        if not self.profiled_actions:
            return ""
        sections = [self._title()]
        for action, profile in self.profiled_actions.items():
            if self.dump_stats:
                path = self.output_path(suffix=f"-{_safe(action)}.prof")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                profile.dump_stats(path)
            text = io.StringIO()
            pstats.Stats(profile, stream=text).strip_dirs().sort_stats("cumulative").print_stats(
                self.line_count_restriction
            )
            sections += [f"Profile stats for: {action}", text.getvalue()]
        return "\n".join(sections)

    def teardown(self, stage: str) -> None:
        for profile in self._stack:
            profile.disable()
        self._stack.clear()


class PyTorchProfiler(ReportingProfiler):
    """torch.profiler over the run: an operator table in the report, and a Chrome trace per recording.

    Each action is a ``record_function`` range named ``[tribus]<action>``; every ``*_step`` action ends
    a profiler step, so a ``schedule`` (passed to ``torch.profiler.profile`` with the other keyword
    arguments, e.g. ``record_shapes=True``) counts batches. Without one, the whole run is recorded:
    limit the batches, or pass ``schedule=torch.profiler.schedule(wait=1, warmup=1, active=3)``.
    ``export_to_chrome`` writes ``<dir>/<stage>-<filename>-trace<N>.json``, openable in
    chrome://tracing or Perfetto. ``function_events`` is the recorded ``EventList`` once the run ends.
    torch.profiler is imported only when profiling starts.

    Args:
        dirpath: Where the report goes; the logger's ``log_dir`` when ``None`` (the working directory
            without a logger).
        filename: Write the report to ``<dirpath>/<stage>-<filename>.txt`` (ranks other than 0 add
            ``-<rank>``) instead of printing it on rank 0.
        export_to_chrome: Write a Chrome trace per recording; their paths are kept in ``trace_paths``.
        row_limit: Rows of the operator table in the report.
        sort_by_key: The table's sort column; ``cuda_time_total`` when CUDA is recorded, else
            ``cpu_time_total``.
        **profiler_kwargs: Passed to ``torch.profiler.profile`` (``schedule``, ``record_shapes``,
            ``activities``, ...).

    Raises:
        ValueError: ``on_trace_ready`` is among ``profiler_kwargs``: the profiler writes traces itself.
    """

    STEP_ACTIONS = ("training_step", "validation_step", "test_step", "predict_step")

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None,
                 export_to_chrome: bool = True, row_limit: int = 20, sort_by_key: str | None = None,
                 **profiler_kwargs: Any) -> None:
        super().__init__(dirpath, filename)
        if "on_trace_ready" in profiler_kwargs:
            raise ValueError("PyTorchProfiler writes the traces itself; leave out on_trace_ready "
                             "(set export_to_chrome=False to write none).")
        self.export_to_chrome = export_to_chrome
        self.row_limit = row_limit
        self.sort_by_key = sort_by_key
        self.profiler_kwargs = profiler_kwargs
        self.trace_paths: list[str] = []
        self._profiler: Any = None
        self._ranges: dict[str, Any] = {}
        self.function_events: Any = None  # torch.profiler's EventList once a recording ends

    def setup(self, stage: str, log_dir: str | None) -> None:
        super().setup(stage, log_dir)
        self.function_events = None

    def start(self, action: str) -> None:
        import torch.profiler

        if self._profiler is None:
            self._profiler = torch.profiler.profile(on_trace_ready=self._trace_ready, **self.profiler_kwargs)
            self._profiler.__enter__()
        if action not in self._ranges:
            self._ranges[action] = torch.profiler.record_function(f"[tribus]{action}")
            self._ranges[action].__enter__()

    def stop(self, action: str) -> None:
        recording = self._ranges.pop(action, None)
        if recording is not None:
            recording.__exit__(None, None, None)
        if self._profiler is not None and action in self.STEP_ACTIONS:
            self._profiler.step()

    def summary(self) -> str:
        """The report: the operator table, sorted by ``sort_by_key``; ``""`` when nothing was recorded."""
        self._finish()
        if not self.function_events:
            return ""
        sort_by = self.sort_by_key or ("cuda_time_total" if _records_cuda(self.profiler_kwargs) else "cpu_time_total")
        table = self.function_events.key_averages().table(sort_by=sort_by, row_limit=self.row_limit)
        return "\n".join([self._title(), table])

    def teardown(self, stage: str) -> None:
        self._finish()

    def _finish(self) -> None:
        for recording in reversed(list(self._ranges.values())):
            recording.__exit__(None, None, None)
        self._ranges.clear()
        if self._profiler is not None:
            profiler, self._profiler = self._profiler, None
            profiler.__exit__(None, None, None)
            self.function_events = profiler.events()

    def _trace_ready(self, profiler: Any) -> None:
        if not self.export_to_chrome:
            return
        path = self.output_path(suffix=f"-trace{len(self.trace_paths)}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        profiler.export_chrome_trace(path)
        self.trace_paths.append(path)


def _records_cuda(profiler_kwargs: dict[str, Any]) -> bool:
    import torch
    import torch.profiler

    activities = profiler_kwargs.get("activities")
    if activities is None:
        return torch.cuda.is_available()
    return torch.profiler.ProfilerActivity.CUDA in activities


def _safe(action: str) -> str:
    """An action name as a file name part: ``[Callback]X.hook`` → ``Callback_X.hook``."""
    return "".join(character if character.isalnum() or character in "._-" else "_" for character in action).strip("_")
