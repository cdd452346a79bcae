"""self.log in on_train_start: where the value goes, as Lightning 2.6.6 sends it (recorded with the same program)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engineering import Logger, MisconfigurationError, Trainer
from research import LightningModule


class RecordingLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    @property
    def name(self):
        return "recording"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params):
        pass

    def log_metrics(self, metrics, step=None):
        self.calls.append(({key: float(value) for key, value in metrics.items()}, step))


class LogsAtTrainStart(LightningModule):
    def __init__(self, **options) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.options = options
        self.seen = []

    def on_train_start(self):
        self.log("start_metric", 3.0, **self.options)

    def training_step(self, batch, batch_idx):
        self.seen.append({key: float(value) for key, value in self.trainer.callback_metrics.items()})
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, **options):
    logger, model = RecordingLogger(), LogsAtTrainStart(**options)
    trainer = Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2))
    return trainer, logger, model


@pytest.mark.parametrize("options", [{}, {"on_epoch": True}, {"prog_bar": True}])
def test_the_value_reaches_the_logger_once_after_the_first_epoch(tmp_path, options):
    trainer, logger, model = fit(tmp_path, **options)
    assert logger.calls == [({"start_metric": 3.0, "epoch": 0.0}, 1)]
    assert model.seen == [{"start_metric": 3.0}] * 4  # readable by every training step
    assert {key: float(value) for key, value in trainer.callback_metrics.items()} == {"start_metric": 3.0}
    assert {key: float(value) for key, value in trainer.logged_metrics.items()} == {"start_metric": 3.0}
    assert trainer.progress_bar_metrics == ({"start_metric": 3.0} if options.get("prog_bar") else {})


def test_with_logger_false_it_stays_in_callback_metrics(tmp_path):
    trainer, logger, _ = fit(tmp_path, logger=False)
    assert logger.calls == []
    assert {key: float(value) for key, value in trainer.callback_metrics.items()} == {"start_metric": 3.0}
    assert trainer.logged_metrics == {}


def test_on_step_is_refused_in_lightnings_words(tmp_path):
    with pytest.raises(MisconfigurationError,
                       match=r"You can't `self.log\(on_step=True\)` inside `on_train_start`, must be one of \(False,\)."):
        fit(tmp_path, on_step=True)
