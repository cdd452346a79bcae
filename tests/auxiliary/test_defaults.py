"""The default subscribers arrive through the discovery door, and the door takes drop-ins too."""

from __future__ import annotations

import importlib.util

import pytest

from auxiliary import CSVLogger, ModelSummary, TensorBoardLogger, TQDMProgressBar
from engineering import Callback, MisconfigurationError, ModelCheckpoint, Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


def test_defaults_are_progress_bar_summary_tensorboard_and_checkpointing_last(tmp_path):
    trainer = Trainer(default_root_dir=tmp_path)
    kinds = [type(callback) for callback in trainer.callbacks]
    assert TQDMProgressBar in kinds and ModelSummary in kinds
    assert kinds[-1] is ModelCheckpoint
    assert [type(logger) for logger in trainer.loggers] == [TensorBoardLogger]
    assert trainer.logger.save_dir == str(tmp_path)


def test_without_tensorboard_the_default_logger_is_csv(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    assert [type(logger) for logger in Trainer(default_root_dir=tmp_path).loggers] == [CSVLogger]


def test_flags_remove_the_defaults(tmp_path):
    trainer = Trainer(default_root_dir=tmp_path, **QUIET)
    assert trainer.callbacks == [] and trainer.loggers == []
    assert Trainer(default_root_dir=tmp_path, barebones=True).callbacks == []


def test_a_user_progress_bar_or_summary_replaces_the_default(tmp_path):
    bar, summary = TQDMProgressBar(refresh_rate=5), ModelSummary(max_depth=2)
    trainer = Trainer(default_root_dir=tmp_path, callbacks=[bar, summary])
    assert [c for c in trainer.callbacks if isinstance(c, TQDMProgressBar)] == [bar]
    assert [c for c in trainer.callbacks if isinstance(c, ModelSummary)] == [summary]


def test_a_user_logger_replaces_the_default(tmp_path):
    mine = CSVLogger(tmp_path)
    assert Trainer(default_root_dir=tmp_path, logger=mine).loggers == [mine]
    assert Trainer(default_root_dir=tmp_path, logger=False).loggers == []


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
