"""Profilers: the simple report names a slow subscriber; the advanced and PyTorch ones leave real artifacts."""

from __future__ import annotations

import cProfile
import json
import time
from pathlib import Path

import pytest
import torch

from auxiliary import AdvancedProfiler, PyTorchProfiler, SimpleProfiler
from engineering import Callback
from engineering import MisconfigurationError, Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


class Sleepy(Callback):
    """The deliberately slow drop-in: 10 ms after every training batch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(0.01)


class Quick(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pass


def report_rows(report: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for line in report.splitlines()
            if len(cells := [cell.strip() for cell in line.split(" | ")]) > 1}


def test_the_simple_report_names_a_slow_callback(tmp_path):
    profiler = SimpleProfiler(dirpath=tmp_path, filename="perf")
    Trainer(max_epochs=1, profiler=profiler, callbacks=[Quick(), Sleepy()], default_root_dir=tmp_path,
            **QUIET).fit(TinyModule(), tiny_loader(), tiny_loader())
    report = (tmp_path / "fit-perf.txt").read_text()
    rows = report_rows(report)
    assert report.startswith("FIT Profiler Report")
    assert rows["Action"] == ["Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]
    slow = rows["[Callback]Sleepy.on_train_batch_end"]
    assert slow[1] == "4" and float(slow[2]) >= 0.04
    callbacks = sorted((float(row[2]), action) for action, row in rows.items() if action.startswith("[Callback]"))
    assert callbacks[-1][1] == "[Callback]Sleepy.on_train_batch_end"
    assert float(rows["[Callback]Quick.on_train_batch_end"][2]) < 0.01
    for action in ("training_step", "backward", "optimizer_step", "zero_grad", "batch_transfer", "data_fetch", "validation",
                   "validation_step", "run_validation_evaluation"):
        assert action in rows, action


def test_the_report_is_printed_when_no_filename_is_given(tmp_path, capsys):
    Trainer(max_epochs=1, profiler=True, default_root_dir=tmp_path, **QUIET).fit(TinyModule(), tiny_loader())
    out = capsys.readouterr().out
    assert "FIT Profiler Report" in out and "training_step" in out


@pytest.mark.parametrize("name, kind", [("simple", SimpleProfiler), (True, SimpleProfiler),
                                        ("advanced", AdvancedProfiler), ("pytorch", PyTorchProfiler)])
def test_profiler_names_resolve_through_the_entry_points(name, kind):
    assert type(Trainer(profiler=name, **QUIET).profiler) is kind


def test_an_unknown_profiler_name_lists_the_installed_ones():
    with pytest.raises(MisconfigurationError, match=r"installed profilers: \['advanced', 'pytorch', 'simple'\]"):
        Trainer(profiler="fancy", **QUIET)


def test_each_run_reports_its_own_actions(tmp_path):
    profiler = SimpleProfiler(dirpath=tmp_path, filename="perf")
    trainer = Trainer(max_epochs=1, profiler=profiler, default_root_dir=tmp_path, **QUIET)
    trainer.fit(TinyModule(), tiny_loader())
    trainer.test(TinyModule(), tiny_loader(), verbose=False)
    assert "training_step" not in report_rows((tmp_path / "test-perf.txt").read_text())
    assert profiler.durations()["test_step"][0] == 4


def test_starting_a_running_action_is_an_error():
    profiler = SimpleProfiler()
    profiler.start("step")
    with pytest.raises(ValueError, match="'step' started while already running"):
        profiler.start("step")
    with pytest.raises(ValueError, match="'other' stopped but never started"):
        profiler.stop("other")


def test_the_advanced_report_lists_top_functions_per_action(tmp_path):
    profiler = AdvancedProfiler(dirpath=tmp_path, filename="deep", line_count_restriction=5, dump_stats=True)
    Trainer(max_epochs=1, profiler=profiler, callbacks=[Sleepy()], default_root_dir=tmp_path, **QUIET).fit(
        TinyModule(), tiny_loader()
    )
    report = (tmp_path / "fit-deep.txt").read_text()
    assert "Profile stats for: training_step" in report and "(training_step)" in report
    assert "Profile stats for: [Callback]Sleepy.on_train_batch_end" in report and "time.sleep" in report
    assert (tmp_path / "fit-deep-training_step.prof").stat().st_size > 0


def test_the_pytorch_profiler_writes_a_chrome_trace_and_an_operator_table(tmp_path):
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="torch", row_limit=10)
    Trainer(max_epochs=1, limit_train_batches=2, profiler=profiler, default_root_dir=tmp_path, **QUIET).fit(
        TinyModule(), tiny_loader()
    )
    assert profiler.trace_paths == [str(tmp_path / "fit-torch-trace0.json")]
    names = {event.get("name") for event in json.loads(Path(profiler.trace_paths[0]).read_text())["traceEvents"]}
    assert {"[tribus]training_step", "[tribus]backward", "[tribus]optimizer_step"} <= names
    report = (tmp_path / "fit-torch.txt").read_text()
    assert "FIT Profiler Report" in report and "aten::" in report


def test_the_profilers_expose_what_they_recorded_under_lightnings_names(tmp_path):
    simple, advanced = SimpleProfiler(), AdvancedProfiler()
    for profiler in (simple, advanced):
        Trainer(max_epochs=1, profiler=profiler, default_root_dir=tmp_path, **QUIET).fit(TinyModule(), tiny_loader())
    durations = simple.recorded_durations["training_step"]
    assert len(durations) == 4 and all(isinstance(duration, float) and duration > 0 for duration in durations)
    assert isinstance(advanced.profiled_actions["training_step"], cProfile.Profile)
    pytorch = PyTorchProfiler(dirpath=tmp_path, export_to_chrome=False)
    assert pytorch.function_events is None
    Trainer(max_epochs=1, limit_train_batches=2, profiler=pytorch, default_root_dir=tmp_path, **QUIET).fit(
        TinyModule(), tiny_loader()
    )
    assert isinstance(pytorch.function_events, torch.autograd.profiler_util.EventList)
    assert "[tribus]training_step" in {event.name for event in pytorch.function_events}
