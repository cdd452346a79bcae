"""LearningRateMonitor: learning rates reach the loggers (read back from metrics.csv) under Lightning's names."""

from __future__ import annotations

import csv

import pytest
import torch

from auxiliary import CSVLogger, LearningRateMonitor
from engineering import MisconfigurationError, Trainer
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def logged(logger: CSVLogger, column: str) -> list[tuple[int, float]]:
    with open(logger.metrics_file_path, newline="") as file:
        return [(int(row["step"]), float(row[column])) for row in csv.DictReader(file) if row.get(column)]


class Halving(TinyModule):
    """SGD whose learning rate halves after every optimizer step."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def test_step_schedulers_are_logged_every_log_every_n_steps(tmp_path):
    logger = CSVLogger(tmp_path)
    monitor = LearningRateMonitor(log_momentum=True)
    Trainer(max_epochs=2, log_every_n_steps=2, logger=logger, callbacks=[monitor], default_root_dir=tmp_path,
            **NO_EXTRAS).fit(Halving(), tiny_loader())
    assert logged(logger, "lr-SGD") == [(step, pytest.approx(0.1 * 0.5**step)) for step in (1, 3, 5, 7)]
    assert logged(logger, "lr-SGD-momentum") == [(step, 0.9) for step in (1, 3, 5, 7)]
    assert monitor.lrs["lr-SGD"] == [pytest.approx(0.1 * 0.5**step) for step in (1, 3, 5, 7)]


def test_epoch_interval_logs_when_each_epoch_starts(tmp_path):
    logger = CSVLogger(tmp_path)
    Trainer(max_epochs=2, logger=logger, callbacks=[LearningRateMonitor(logging_interval="epoch")],
            default_root_dir=tmp_path, **NO_EXTRAS).fit(Halving(), tiny_loader())
    assert logged(logger, "lr-SGD") == [(0, pytest.approx(0.1)), (4, pytest.approx(0.1 * 0.5**4))]


class TwoAdams(TinyModule):
    """Manual optimization with two Adams, the second with two named parameter groups and a named scheduler."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.other = torch.nn.Linear(32, 2)

    def training_step(self, batch, batch_idx):
        for optimizer in self.optimizers():
            optimizer.zero_grad()
        loss = super().training_step(batch, batch_idx) + self.other(batch[0]).sum() * 0
        self.manual_backward(loss)
        for optimizer in self.optimizers():
            optimizer.step()

    def configure_optimizers(self):
        first = torch.optim.Adam(self.layer.parameters(), lr=0.01)
        second = torch.optim.Adam([{"params": self.other.weight, "name": "weights"},
                                   {"params": self.other.bias, "name": "bias", "lr": 0.5}], lr=0.02)
        third = torch.optim.Adam(self.other.parameters(), lr=0.03)
        scheduler = {"scheduler": torch.optim.lr_scheduler.StepLR(third, 1), "name": "warmup"}
        return [first, second, third], [scheduler]


def test_names_follow_lightning_for_repeated_optimizers_groups_and_named_schedulers(tmp_path):
    logger = CSVLogger(tmp_path)
    monitor = LearningRateMonitor(logging_interval="epoch")
    Trainer(max_epochs=1, logger=logger, callbacks=[monitor], default_root_dir=tmp_path, **NO_EXTRAS).fit(
        TwoAdams(), tiny_loader()
    )
    assert sorted(monitor.lrs) == ["lr-Adam", "lr-Adam-1/bias", "lr-Adam-1/weights", "warmup"]
    assert logged(logger, "lr-Adam-1/bias") == [(0, 0.5)]


def test_without_a_logger_it_names_the_fix(tmp_path):
    trainer = Trainer(max_epochs=1, logger=False, callbacks=[LearningRateMonitor()], default_root_dir=tmp_path,
                      **NO_EXTRAS)
    with pytest.raises(MisconfigurationError, match="LearningRateMonitor sends its values to loggers.*logger="):
        trainer.fit(Halving(), tiny_loader())


def test_a_bad_interval_names_the_choices():
    with pytest.raises(MisconfigurationError, match="use 'step', 'epoch' or None"):
        LearningRateMonitor(logging_interval="batch")


def test_the_last_momentum_and_weight_decay_values_are_kept_by_name(tmp_path):
    logged_both, logged_none = LearningRateMonitor(log_momentum=True, log_weight_decay=True), LearningRateMonitor()
    for monitor in (logged_both, logged_none):
        Trainer(max_epochs=1, log_every_n_steps=1, logger=CSVLogger(tmp_path), callbacks=[monitor],
                default_root_dir=tmp_path,
                **NO_EXTRAS).fit(Halving(), tiny_loader())
    assert logged_both.last_momentum_values == {"lr-SGD-momentum": 0.9}
    assert logged_both.last_weight_decay_values == {"lr-SGD-weight_decay": 0.0}
    assert logged_none.last_momentum_values == {"lr-SGD-momentum": None}  # as Lightning: named, never logged
    assert logged_none.last_weight_decay_values == {"lr-SGD-weight_decay": None}
