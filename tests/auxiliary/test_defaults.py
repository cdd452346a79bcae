"""The default subscribers arrive through the discovery door, and the door takes drop-ins too."""

from __future__ import annotations

import csv
import io
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from auxiliary import CSVLogger, ModelSummary, TensorBoardLogger, TQDMProgressBar
from engineering import Callback, MisconfigurationError, ModelCheckpoint, Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


def test_defaults_are_progress_bar_summary_tensorboard_and_checkpointing_last(tmp_path):
    trainer = Trainer(default_root_dir=tmp_path)
    kinds = [type(callback) for callback in trainer.callbacks]
    assert TQDMProgressBar in kinds and ModelSummary in kinds
    assert kinds[-1] is ModelCheckpoint
    assert [type(logger) for logger in trainer.loggers] == [TensorBoardLogger]


def test_flags_remove_the_defaults(tmp_path):
    trainer = Trainer(default_root_dir=tmp_path, **QUIET)
    assert trainer.callbacks == [] and trainer.loggers == []
    assert Trainer(default_root_dir=tmp_path, barebones=True).callbacks == []


def test_a_user_progress_bar_replaces_the_default(tmp_path):
    mine = TQDMProgressBar(refresh_rate=5)
    trainer = Trainer(default_root_dir=tmp_path, callbacks=[mine])
    assert [c for c in trainer.callbacks if isinstance(c, TQDMProgressBar)] == [mine]


class Recorder(Callback):
    seen: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        Recorder.seen.append(batch_idx)


def make_recorder(trainer):
    return Recorder()


def test_environment_variable_attaches_a_subscriber_to_every_trainer(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIBUS_CALLBACKS", f"{__name__}:make_recorder")
    Recorder.seen = []
    Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET).fit(TinyModule(), tiny_loader())
    assert Recorder.seen == [0, 1, 2, 3]


def test_a_bad_environment_entry_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIBUS_CALLBACKS", "no_such_module:factory")
    with pytest.raises(MisconfigurationError, match="TRIBUS_CALLBACKS names 'no_such_module:factory'"):
        Trainer(default_root_dir=tmp_path)


def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path):
    trainer = Trainer(max_epochs=2, log_every_n_steps=2, default_root_dir=tmp_path,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader())
    accumulator = EventAccumulator(trainer.log_dir)
    accumulator.Reload()
    train_loss = accumulator.Scalars("train_loss")
    assert [event.step for event in train_loss] == [1, 3, 5, 7]
    logged = trainer.logged_metrics
    assert train_loss[-1].value == pytest.approx(logged["train_loss"].item())
    val_loss = accumulator.Scalars("val_loss")
    assert [event.step for event in val_loss] == [3, 7]
    assert val_loss[-1].value == pytest.approx(trainer.callback_metrics["val_loss"].item())
    assert trainer.log_dir == str(tmp_path / "lightning_logs" / "version_0")


def test_csv_logger_grows_its_header_and_writes_hparams(tmp_path):
    logger = CSVLogger(tmp_path)
    trainer = Trainer(max_epochs=1, log_every_n_steps=1, logger=logger, default_root_dir=tmp_path,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(TinyModule(lr=0.05), tiny_loader(), tiny_loader())
    with open(logger.metrics_file_path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["step"] for row in rows if row["train_loss"]] == ["0", "1", "2", "3"]
    assert rows[-1]["val_loss"] != "" and set(rows[0]) == {"step", "train_loss", "epoch", "val_loss"}
    assert (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text() == "lr: 0.05\n"


def test_progress_bar_off_a_terminal_prints_few_plain_lines(tmp_path):
    stream = io.StringIO()
    bar = TQDMProgressBar(stream=stream)
    loader = tiny_loader(samples=1000 * 4, batch_size=4)
    trainer = Trainer(max_epochs=1, callbacks=[bar], default_root_dir=tmp_path, logger=False,
                      enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(TinyModule(), loader)
    output = stream.getvalue()
    assert "\r" not in output
    lines = output.splitlines()
    assert 1 <= len(lines) <= 10, lines
    assert lines[-1].startswith("Epoch 0 1000/1000") and "train_loss=" in lines[-1]


def test_model_summary_totals_match_the_parameters(tmp_path, capsys):
    model = TinyModule()
    model.layer.bias.requires_grad_(False)
    table = ModelSummary().summarize(model)
    assert "64       Trainable params" in table
    assert "2        Non-trainable params" in table
    assert f"{sum(p.numel() for p in model.parameters())}       Total params" in table
