"""Timer: stops within one step of its budget, measures each stage, and a resumed run spends only the rest."""

from __future__ import annotations

import datetime
import time

import pytest
import torch

import auxiliary.timer
from auxiliary import Timer
from engineering import Callback, MisconfigurationError, Trainer
from tests.auxiliary.resuming import assert_same_weights, resumed_equals_uninterrupted
from tests.helpers import QUIET, TinyModule, tiny_loader


class Clock:
    """Stands in for ``time`` in auxiliary.timer: each training step takes exactly one second."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auxiliary.timer, "time", fake)
    return fake


class OneSecondSteps(TinyModule):
    clock: Clock  # a class attribute, not an __init__ argument: it is no hyperparameter to save in checkpoints

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__()

    def training_step(self, batch, batch_idx):
        self.clock.now += 1.0
        return super().training_step(batch, batch_idx)


def one_second_steps(clock: Clock) -> OneSecondSteps:
    OneSecondSteps.clock = clock
    return OneSecondSteps()


def test_training_stops_at_the_first_step_past_the_budget(tmp_path, clock, capsys):
    timer = Timer(duration={"seconds": 5.5})
    trainer = Trainer(max_epochs=10, callbacks=[timer], default_root_dir=tmp_path, **QUIET)
    trainer.fit(one_second_steps(clock), tiny_loader())  # 4 steps per epoch
    assert trainer.global_step == 6  # 5 s left 0.5 s; the 6th step spent it
    assert timer.time_elapsed("train") == 6.0 and timer.time_remaining() == -0.5
    assert "Time limit reached. Elapsed time is 0:00:06" in capsys.readouterr().out


def test_with_interval_epoch_the_epoch_in_progress_finishes(tmp_path, clock):
    trainer = Trainer(max_epochs=10, callbacks=[Timer(duration={"seconds": 5.5}, interval="epoch")],
                      default_root_dir=tmp_path, **QUIET)
    trainer.fit(one_second_steps(clock), tiny_loader())
    assert trainer.global_step == 8


def test_a_real_budget_stops_at_the_first_step_that_ends_past_it(tmp_path):
    timer = Timer(duration=datetime.timedelta(seconds=0.3), verbose=False)

    class Elapsed(Callback):  # listed before the timer: it reads the clock no later than the timer does
        def __init__(self):
            self.at_step_end = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.at_step_end.append(timer.time_elapsed())

    class SlowSteps(TinyModule):
        def training_step(self, batch, batch_idx):
            time.sleep(0.02)
            return super().training_step(batch, batch_idx)

    elapsed = Elapsed()
    trainer = Trainer(max_epochs=1000, callbacks=[elapsed, timer], default_root_dir=tmp_path, **QUIET)
    trainer.fit(SlowSteps(), tiny_loader())
    assert trainer.global_step == len(elapsed.at_step_end) > 1
    assert elapsed.at_step_end[-2] < 0.3 <= timer.time_elapsed()  # one step earlier the budget was not spent


def test_each_stage_is_timed(tmp_path, clock):
    class SlowValidation(OneSecondSteps):
        def validation_step(self, batch, batch_idx):
            self.clock.now += 0.25

        def test_step(self, batch, batch_idx):
            self.clock.now += 0.5

    timer = Timer()
    trainer = Trainer(max_epochs=1, callbacks=[timer], default_root_dir=tmp_path, **QUIET)
    SlowValidation.clock = clock
    module = SlowValidation()
    trainer.fit(module, tiny_loader(), tiny_loader(samples=32))  # 2 validation batches; 2 more for the sanity check
    trainer.test(module, tiny_loader(samples=48), verbose=False)
    assert timer.time_elapsed("sanity_check") == 0.5  # kept apart from the validation that follows
    assert timer.time_elapsed("validate") == 0.5 and timer.time_elapsed("train") == 4.5  # 4 steps + validation
    assert timer.time_elapsed("test") == 1.5 and timer.time_remaining() is None
    assert timer.start_time("train") == 1000.5 and timer.end_time("train") == 1005.0


def test_a_resumed_run_spends_only_what_was_left(tmp_path, clock):
    whole, resumed = resumed_equals_uninterrupted(
        lambda: one_second_steps(clock), lambda: [Timer(duration={"seconds": 9.5})], tiny_loader, tmp_path,
        step=6, max_epochs=10,
    )
    assert_same_weights(whole, resumed)
    assert whole.trainer.global_step == resumed.trainer.global_step == 10


@pytest.mark.parametrize(("arguments", "message"), [
    (dict(duration="1 hour"), "DD:HH:MM:SS"),
    (dict(interval="batch"), "'step' or 'epoch'"),
])
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(MisconfigurationError, match=message):
        Timer(**arguments)


def test_durations_are_parsed_like_lightning():
    assert Timer("01:02:03:04").time_remaining() == 93784.0
    with pytest.raises(ValueError, match="stages"):
        Timer().time_elapsed("training")
