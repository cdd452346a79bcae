"""Trainer attributes Lightning programs read and set: the progress bar, the loggers, the devices."""

from __future__ import annotations

from auxiliary import CSVLogger, TensorBoardLogger, TQDMProgressBar
from engineering import ProgressBar, Trainer
from research import LightningDataModule
from tests.helpers import TinyModule, tiny_loader


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


def test_model_is_the_module_the_strategy_runs(tmp_path):
    trainer = Trainer(max_epochs=1, enable_progress_bar=False, logger=False, default_root_dir=tmp_path)
    assert trainer.model is None
    module = TinyModule()
    trainer.fit(module, tiny_loader())
    assert trainer.model is module


def test_a_datamodule_keeps_its_initial_hyperparameters(tmp_path):
    class Sized(LightningDataModule):
        def __init__(self, batch_size: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()

    data = Sized(batch_size=4)
    data.hparams.batch_size = 16
    assert data.hparams_initial == {"batch_size": 4} and data.hparams.batch_size == 16
