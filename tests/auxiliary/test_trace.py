"""EventTrace: the JSON-lines file follows the hook order; the summary command reads it back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from auxiliary import EarlyStopping, EventTrace
from engineering import Callback
from auxiliary.trace import read_trace, summarize
from auxiliary.trace.__main__ import main
from engineering import Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader

ROOT = Path(__file__).resolve().parents[2]

TRAIN_BATCH = ["on_train_batch_start", "on_before_zero_grad", "on_before_backward", "on_after_backward",
               "on_before_optimizer_step", "on_train_batch_end"]
VALIDATION = ["on_validation_start", "on_validation_epoch_start", "on_validation_batch_start",
              "on_validation_batch_end", "on_validation_epoch_end", "on_validation_end"]
FIT = [
    "setup", "on_fit_start",
    "on_sanity_check_start", *VALIDATION, "on_sanity_check_end",
    "on_train_start", "on_train_epoch_start", *TRAIN_BATCH, *TRAIN_BATCH, *VALIDATION, "on_train_epoch_end",
    "on_train_end", "on_fit_end", "teardown",
]


def traced_fit(path: Path, callbacks: tuple[Callback, ...] = ()) -> Trainer:
    flags = {**QUIET, "max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
             "num_sanity_val_steps": 1, "log_every_n_steps": 1}
    trainer = Trainer(default_root_dir=path.parent, callbacks=[EventTrace(path), *callbacks], **flags)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader())
    return trainer


def test_the_trace_follows_the_hook_order(tmp_path):
    path = tmp_path / "trace.jsonl"
    traced_fit(path)
    records = read_trace(path)
    hooks = [record["name"] for record in records if record["name"] not in ("log_metrics", "log_hyperparams")]
    assert hooks == FIT
    names = [record["name"] for record in records]
    assert names[1] == "log_hyperparams"  # sent before on_fit_start, as Lightning logs them
    assert names.count("log_metrics") == 3  # after each training step, and after validation


def test_each_record_says_where_the_trainer_was(tmp_path):
    path = tmp_path / "trace.jsonl"
    traced_fit(path)
    records = read_trace(path)
    assert all({"name", "time", "epoch", "global_step", "batch_idx", "rank"} <= set(record) for record in records)
    times = [record["time"] for record in records]
    assert times == sorted(times)
    batch_ends = [record for record in records if record["name"] == "on_train_batch_end"]
    assert [(r["batch_idx"], r["global_step"], r["epoch"], r["rank"]) for r in batch_ends] == [(0, 1, 0, 0),
                                                                                              (1, 2, 0, 0)]
    assert records[0]["stage"] == "fit" and records[-1]["stage"] == "fit"
    metrics = [record for record in records if record["name"] == "log_metrics"]
    assert "val_loss" in metrics[-1]["metrics"] and metrics[-1]["step"] == 1


def test_the_trace_shows_where_a_stop_was_requested(tmp_path):
    class Worsening(TinyModule):
        def validation_step(self, batch, batch_idx):
            self.log("score", float(self.current_epoch))

    path = tmp_path / "trace.jsonl"
    trainer = Trainer(max_epochs=10, limit_train_batches=1, num_sanity_val_steps=0, default_root_dir=tmp_path,
                      callbacks=[EventTrace(path), EarlyStopping("score", patience=1)], **QUIET)
    trainer.fit(Worsening(), tiny_loader(), tiny_loader())
    first = next(record for record in read_trace(path) if record.get("should_stop"))
    assert (first["name"], first["epoch"]) == ("on_train_epoch_end", 1)
    assert "should_stop first seen at on_train_epoch_end: epoch 1" in summarize(read_trace(path))


def test_an_exception_is_recorded_and_the_file_closed(tmp_path):
    class Failing(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            raise RuntimeError("boom")

    path = tmp_path / "trace.jsonl"
    with pytest.raises(RuntimeError, match="boom"):
        traced_fit(path, callbacks=(Failing(),))
    names = [record["name"] for record in read_trace(path)]
    # The trace hears each event after the other subscribers: the event that raised never reached it.
    assert names[-3:] == ["on_before_optimizer_step", "on_exception", "teardown"]
    assert read_trace(path)[-2]["exception"] == "RuntimeError('boom')"


def test_a_later_run_appends_to_the_same_file(tmp_path):
    path = tmp_path / "trace.jsonl"
    trace = EventTrace(path)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[trace], **QUIET)
    trainer.fit(TinyModule(), tiny_loader())
    trainer.test(TinyModule(), tiny_loader(), verbose=False)
    stages = [record["stage"] for record in read_trace(path) if record["name"] == "setup"]
    assert stages == ["fit", "test"]


def test_the_summary_counts_events_and_lists_the_last_ones(tmp_path, capsys):
    path = tmp_path / "trace.jsonl"
    traced_fit(path)
    capsys.readouterr()  # what fit printed ("`Trainer.fit` stopped: ...")
    assert main([str(path), "--last", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(read_trace(path))} events over ")
    count = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.startswith("on_")}
    assert count["on_train_batch_end"] == 2 and count["on_validation_end"] == 2
    assert out.rstrip().splitlines()[-3:][0].lstrip().startswith("on_train_end")


def test_the_summary_command_runs_as_a_module(tmp_path):
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(json.dumps({"name": name, "time": float(index), "epoch": 0, "global_step": 0,
                                          "batch_idx": 0, "rank": 0})
                              for index, name in enumerate(["setup", "on_fit_start", "teardown"])) + "\n")
    done = subprocess.run([sys.executable, "-m", "auxiliary.trace", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("3 events over 2.000 s") and "RuntimeWarning" not in done.stderr


def test_a_file_that_is_not_a_trace_is_refused_by_line(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(SystemExit):
        main([str(path)])
    assert "notes.txt:1 is not a JSON line" in capsys.readouterr().err
