"""EarlyStopping: plateau with patience, thresholds, divergence, non-finite values, strictness, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from auxiliary import EarlyStopping, EarlyStoppingReason
from engineering import MisconfigurationError, ModelCheckpoint, Trainer
from tests.helpers import TinyModule, tiny_loader

QUIETER = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False,
               num_sanity_val_steps=0)


class Scripted(TinyModule):
    """Logs ``score`` = ``scores[epoch]`` from validation, so each test decides what the monitor sees."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores

    def validation_step(self, batch, batch_idx):
        self.log("score", self.scores[self.current_epoch])


def fit(callback: EarlyStopping, scores: list[float], root, **flags) -> Trainer:
    flags = {**QUIETER, **flags}
    trainer = Trainer(max_epochs=len(scores), callbacks=[callback], default_root_dir=root, **flags)
    trainer.fit(Scripted(scores), tiny_loader(), tiny_loader(samples=16))
    return trainer


def test_stops_when_the_metric_plateaus_for_patience_checks(tmp_path, capsys):
    stopper = EarlyStopping("score", patience=2)
    trainer = fit(stopper, [1.0, 0.9, 0.95, 0.9, 0.5, 0.4], tmp_path)
    assert trainer.current_epoch == 4  # epochs 0–3 ran: no improvement at 2 and 3
    assert stopper.stopped_epoch == 3 and stopper.wait_count == 2
    assert stopper.best_score.item() == pytest.approx(0.9)
    assert stopper.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert "score did not improve" in stopper.stopping_reason_message
    assert stopper.stopping_reason_message in capsys.readouterr().out  # the reason is printed


def test_min_delta_makes_small_improvements_count_as_none(tmp_path):
    stopper = EarlyStopping("score", min_delta=0.1, patience=2)
    trainer = fit(stopper, [1.0, 0.95, 0.91, 0.5], tmp_path)
    assert trainer.current_epoch == 3 and stopper.best_score.item() == pytest.approx(1.0)


def test_mode_max_follows_a_rising_metric(tmp_path):
    stopper = EarlyStopping("score", mode="max", patience=1)
    trainer = fit(stopper, [0.1, 0.5, 0.4, 0.9], tmp_path)
    assert trainer.current_epoch == 3 and stopper.best_score.item() == pytest.approx(0.5)


def test_stops_once_the_stopping_threshold_is_reached(tmp_path):
    stopper = EarlyStopping("score", stopping_threshold=0.1, patience=100)
    trainer = fit(stopper, [1.0, 0.5, 0.05, 0.01, 0.001], tmp_path)
    assert trainer.current_epoch == 3 and stopper.stopped_epoch == 2
    assert stopper.stopping_reason is EarlyStoppingReason.STOPPING_THRESHOLD
    assert "stopping_threshold 0.1" in stopper.stopping_reason_message


def test_stops_when_the_metric_diverges(tmp_path):
    stopper = EarlyStopping("score", divergence_threshold=3.0, patience=100)
    trainer = fit(stopper, [1.0, 2.0, 7.0, 1.0], tmp_path)
    assert trainer.current_epoch == 3 and stopper.stopping_reason is EarlyStoppingReason.DIVERGENCE_THRESHOLD
    assert "divergence_threshold 3.0" in stopper.stopping_reason_message


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_stops_on_a_non_finite_value(tmp_path, bad):
    stopper = EarlyStopping("score", patience=100)
    trainer = fit(stopper, [1.0, bad, 0.5], tmp_path)
    assert trainer.current_epoch == 2 and stopper.stopping_reason is EarlyStoppingReason.NON_FINITE_METRIC
    assert "is not finite" in stopper.stopping_reason_message


def test_strict_with_a_missing_metric_names_the_available_ones(tmp_path):
    with pytest.raises(RuntimeError, match=r"monitor='val_acc'.*Available metrics: score, train_loss"):
        fit(EarlyStopping("val_acc"), [1.0, 1.0], tmp_path)


def test_not_strict_skips_the_check_while_the_metric_is_missing(tmp_path):
    trainer = fit(EarlyStopping("val_acc", strict=False, patience=0), [1.0, 1.0, 1.0], tmp_path)
    assert trainer.current_epoch == 3


def test_checks_after_each_validation_when_validation_runs_within_the_epoch(tmp_path):
    class Flat(TinyModule):
        def validation_step(self, batch, batch_idx):
            self.log("score", 1.0)  # never improves after the first check

    stopper = EarlyStopping("score", patience=2)
    trainer = Trainer(max_epochs=5, val_check_interval=2, callbacks=[stopper], default_root_dir=tmp_path, **QUIETER)
    trainer.fit(Flat(), tiny_loader(), tiny_loader(samples=16))
    # Two checks per epoch: best at epoch 0's first, waiting at its second and at epoch 1's first.
    # Checking once per epoch instead would have stopped at epoch 2.
    assert stopper.stopped_epoch == 1 and trainer.current_epoch == 2


def test_its_state_goes_into_checkpoints_and_comes_back(tmp_path):
    stopper = EarlyStopping("score", patience=3)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    trainer = Trainer(max_epochs=3, callbacks=[stopper, checkpoints], default_root_dir=tmp_path,
                      **{**QUIETER, "enable_checkpointing": True})
    trainer.fit(Scripted([1.0, 0.5, 0.7]), tiny_loader(), tiny_loader(samples=16))
    saved = torch.load(checkpoints.best_model_path, weights_only=True)["callbacks"][stopper.state_key]
    assert saved["wait_count"] == 1 and saved["best_score"].item() == pytest.approx(0.5)
    assert stopper.state_key == "EarlyStopping{'monitor': 'score', 'mode': 'min'}"

    resumed = EarlyStopping("score", patience=3)
    Trainer(max_epochs=5, callbacks=[resumed], default_root_dir=tmp_path, **QUIETER).fit(
        Scripted([1.0, 0.5, 0.7, 0.8, 0.9]), tiny_loader(), tiny_loader(samples=16),
        ckpt_path=checkpoints.best_model_path,
    )
    assert resumed.wait_count == 3 and resumed.stopped_epoch == 4  # counted on from the checkpoint's 1


def test_a_bad_mode_names_the_choices():
    with pytest.raises(MisconfigurationError, match="mode='avg'.*use 'min' or 'max'"):
        EarlyStopping("score", mode="avg")


def test_a_stop_decided_by_a_mid_epoch_validation_ends_the_epoch_right_there(tmp_path):
    class Flat(TinyModule):
        def validation_step(self, batch, batch_idx):
            self.log("score", 1.0)

    stopper = EarlyStopping("score", patience=2)
    trainer = Trainer(max_epochs=5, val_check_interval=2, callbacks=[stopper], default_root_dir=tmp_path, **QUIETER)
    trainer.fit(Flat(), tiny_loader(samples=16 * 4), tiny_loader(samples=16))
    # Validations after steps 2, 4 and 6; the third exhausts patience, and no further batch runs (as in Lightning).
    assert trainer.global_step == 6
