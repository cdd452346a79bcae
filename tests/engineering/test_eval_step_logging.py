"""Validation and test values logged with ``on_step=True``, as Lightning 2.6.6 treats them: they reach the
loggers after each batch, never ``callback_metrics``; with several dataloaders the suffix follows the fork."""

from __future__ import annotations

import pytest

from engineering import Trainer
from tests.engineering.test_logging import QUIET, WEIGHTED_MEAN, Logs, RecordingLogger, loader


def log_val_steps(module, x):
    module.log("val_mean", x.mean(), on_step=True, on_epoch=True)
    module.log("val_only_step", x.mean(), on_step=True, on_epoch=False)


def test_validation_step_values_reach_the_loggers_at_the_batch_index(tmp_path):
    recorder = RecordingLogger()
    options = dict(QUIET, default_root_dir=tmp_path, logger=[recorder], num_sanity_val_steps=0)
    trainer = Trainer(**options, max_epochs=2, log_every_n_steps=50)
    trainer.fit(Logs(on_val=log_val_steps), loader(), loader())

    step_calls = [(step, metrics) for step, metrics in recorder.calls if "val_mean_step" in metrics]
    # Two validation passes of three batches (means 1.5, 5.5, 8.5): Lightning counts on from pass to pass.
    assert [step for step, _ in step_calls] == [0, 1, 2, 3, 4, 5]
    assert [metrics["val_mean_step"] for _, metrics in step_calls] == [1.5, 5.5, 8.5] * 2
    assert [metrics["val_only_step"] for _, metrics in step_calls] == [1.5, 5.5, 8.5] * 2
    assert all("epoch" not in metrics for _, metrics in step_calls)
    assert recorder.steps_with("val_mean_epoch") == [2, 5]

    # No step value stays in callback_metrics: only the epoch values (under both names).
    assert set(trainer.callback_metrics) == {"val_mean", "val_mean_epoch"}
    assert float(trainer.callback_metrics["val_mean"]) == pytest.approx(WEIGHTED_MEAN)


def test_test_step_values_reach_the_loggers_and_results_hold_the_epoch_value(tmp_path):
    class TestSteps(Logs):
        def test_step(self, batch, batch_idx):
            x, _ = batch
            self.log("test_mean", x.mean(), on_step=True)

    recorder = RecordingLogger()
    trainer = Trainer(**dict(QUIET, default_root_dir=tmp_path, logger=[recorder]))
    results = trainer.test(TestSteps(), loader(), verbose=False)
    assert [(step, metrics["test_mean_step"]) for step, metrics in recorder.calls if "test_mean_step" in metrics] == [
        (0, 1.5), (1, 5.5), (2, 8.5)
    ]
    assert results == [{"test_mean_epoch": pytest.approx(WEIGHTED_MEAN)}]
    assert "test_mean_step" not in trainer.callback_metrics


def test_with_several_dataloaders_the_suffix_follows_the_fork(tmp_path):
    recorder = RecordingLogger()

    class TwoLoaders(Logs):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            x, _ = batch
            self.log("val_mean", x.mean(), on_step=True, on_epoch=True)

    trainer = Trainer(**dict(QUIET, default_root_dir=tmp_path, logger=[recorder]))
    results = trainer.validate(TwoLoaders(), [loader(), loader(samples=4, batch_size=2)], verbose=False)
    assert results == [
        {"val_mean_epoch/dataloader_idx_0": pytest.approx(WEIGHTED_MEAN)},
        {"val_mean_epoch/dataloader_idx_1": pytest.approx(1.5)},
    ]
    assert recorder.steps_with("val_mean_step/dataloader_idx_1") == [0, 1]
    assert set(trainer.callback_metrics) == {
        "val_mean/dataloader_idx_0", "val_mean_epoch/dataloader_idx_0",
        "val_mean/dataloader_idx_1", "val_mean_epoch/dataloader_idx_1",
    }
