"""SpikeDetection: which losses count as spikes, the batches written down to skip, and its saved state."""

from __future__ import annotations

import json
import math

import pytest

from auxiliary import SpikeDetection, TrainingSpikeException
from engineering import MisconfigurationError, Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


class Scripted(TinyModule):
    """Its loss is ``losses[global batch index]`` (with zero gradients, so training itself is irrelevant)."""

    def __init__(self, losses: list[float]) -> None:
        super().__init__()
        self.losses = losses
        self.batches = 0

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).sum() * 0 + self.losses[self.batches]
        self.batches += 1
        return loss


def fit(detector: SpikeDetection, losses: list[float], root) -> Scripted:
    module = Scripted(losses)
    trainer = Trainer(max_epochs=1, callbacks=[detector], default_root_dir=root, **QUIET)
    trainer.fit(module, tiny_loader(samples=16 * len(losses)))
    return module


def test_a_spike_stops_training_and_writes_the_batches_to_skip(tmp_path):
    detector = SpikeDetection()
    with pytest.raises(TrainingSpikeException, match="spike detected in batch 5") as raised:
        fit(detector, [1.0, 0.9, 0.8, 0.85, 0.8, 5.0, 0.7], tmp_path)
    assert raised.value.batch_idx == 5
    # 0.85 was worse than 0.8 but within 2x the running mean of it: no spike
    assert json.loads((tmp_path / "skip_batches.json").read_text()) == [4, 5]


def test_improvements_and_small_rises_are_not_spikes(tmp_path):
    detector = SpikeDetection(window=2, atol=0.5, rtol=None)
    module = fit(detector, [1.0, 1.4, 1.2, 1.6, 1.0], tmp_path)  # each rise is < 0.5 off the last two's mean
    assert module.batches == 5 and detector.bad_batches == []
    assert list(detector.recent) == pytest.approx([1.6, 1.0]) and detector.state_dict()["last_val"] == 1.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_loss_is_a_spike_unless_finite_only_is_off(tmp_path, bad):
    with pytest.raises(TrainingSpikeException):
        fit(SpikeDetection(exclude_batches_path=tmp_path / "skip.json"), [1.0, bad, 1.0], tmp_path)
    assert json.loads((tmp_path / "skip.json").read_text()) == [0, 1]


def test_without_finite_only_nan_is_left_out_and_inf_is_judged_by_the_tolerances(tmp_path):
    lenient = SpikeDetection(finite_only=False)
    fit(lenient, [1.0, math.nan, 1.0], tmp_path)
    assert list(lenient.recent) == [1.0, 1.0]  # the NaN stays out of the running mean
    with pytest.raises(TrainingSpikeException):  # inf is far more than rtol x the mean away
        fit(SpikeDetection(finite_only=False), [1.0, math.inf, 1.0], tmp_path)


def test_warmup_batches_are_not_checked(tmp_path):
    module = fit(SpikeDetection(warmup=3), [1.0, 9.0, 1.0, 1.0], tmp_path)
    assert module.batches == 4


def test_state_round_trips_and_bad_arguments_are_refused():
    detector = SpikeDetection(window=3)
    detector.load_state_dict({"last_val": 2.0, "recent": [1.0, 2.0, 3.0, 4.0], "bad_batches": [6, 7]})
    assert list(detector.recent) == [2.0, 3.0, 4.0] and detector.bad_batches == [6, 7]
    assert detector.state_dict() == {"last_val": 2.0, "recent": [2.0, 3.0, 4.0], "bad_batches": [6, 7]}
    with pytest.raises(MisconfigurationError, match="'min' or 'max'"):
        SpikeDetection(mode="up")
