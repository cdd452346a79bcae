"""Trainer attributes Lightning programs read and set: the progress bar, the loggers, the devices."""

from __future__ import annotations

from auxiliary import CSVLogger, TensorBoardLogger, TQDMProgressBar
from engineering import ProgressBar, Trainer


class CountingBar(ProgressBar):
    """A progress bar of the user's own."""


def test_progress_bar_callback_is_the_progress_bar_among_the_callbacks(tmp_path):
    assert isinstance(Trainer(default_root_dir=tmp_path).progress_bar_callback, TQDMProgressBar)
    assert Trainer(enable_progress_bar=False, default_root_dir=tmp_path).progress_bar_callback is None
    bar = CountingBar()
    trainer = Trainer(callbacks=[bar], default_root_dir=tmp_path)
    assert trainer.progress_bar_callback is bar
    assert not any(isinstance(callback, TQDMProgressBar) for callback in trainer.callbacks)


def test_setting_logger_or_loggers_replaces_them_and_none_clears_them(tmp_path):
    trainer = Trainer(default_root_dir=tmp_path)
    csv, tensorboard = CSVLogger(tmp_path), TensorBoardLogger(tmp_path)
    trainer.logger = csv
    assert trainer.loggers == [csv] and trainer.logger is csv
    trainer.loggers = [tensorboard, csv]
    assert trainer.logger is tensorboard
    trainer.logger = None
    assert trainer.loggers == [] and trainer.logger is None
    trainer.loggers = [csv]
    trainer.loggers = None
    assert trainer.loggers == [] and trainer.logger is None
