"""GradientAccumulationScheduler: optimizer steps per epoch follow the schedule, the numerics are those of a
hand-written loop with the same schedule, and a resumed run ends equal to the uninterrupted one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from auxiliary import GradientAccumulationScheduler
from engineering import Callback, MisconfigurationError, Trainer
from tests.auxiliary.resuming import assert_same_weights, resumed_equals_uninterrupted
from tests.helpers import QUIET, TinyModule, tiny_loader

SCHEDULE = {1: 2, 2: 4}  # epoch 0 steps every batch (the default), epoch 1 every 2, from epoch 2 every 4


def loader():
    return tiny_loader(samples=112)  # 7 batches: the last window of an epoch is short


class StepsPerEpoch(Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.started_at = trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module):
        self.steps.append(trainer.global_step - self.started_at)


def seeded() -> TinyModule:
    torch.manual_seed(0)
    return TinyModule(lr=0.1)


def test_optimizer_steps_per_epoch_follow_the_schedule_and_match_a_hand_loop(tmp_path):
    reference = copy.deepcopy(seeded().layer)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for factor in (1, 2, 4):
        batches = list(loader())
        for index, (x, y) in enumerate(batches):
            (F.cross_entropy(reference(x), y) / factor).backward()
            if (index + 1) % factor == 0 or index == len(batches) - 1:
                optimizer.step()
                optimizer.zero_grad()
    counter, module = StepsPerEpoch(), seeded()
    trainer = Trainer(max_epochs=3, callbacks=[GradientAccumulationScheduler(SCHEDULE), counter],
                      default_root_dir=tmp_path, **QUIET)
    trainer.fit(module, loader())
    assert counter.steps == [7, 4, 2]  # ceil(7 / 1), ceil(7 / 2), ceil(7 / 4)
    assert trainer.accumulate_grad_batches == 4
    assert torch.equal(module.layer.weight, reference.weight) and torch.equal(module.layer.bias, reference.bias)


def test_the_factor_is_that_of_the_latest_scheduled_epoch():
    scheduler = GradientAccumulationScheduler({3: 8, 1: 2})
    assert [scheduler.get_accumulate_grad_batches(epoch) for epoch in range(5)] == [1, 2, 2, 8, 8]
    assert scheduler.going_to_accumulate_grad_batches()


@pytest.mark.parametrize(("scheduling", "error", "message"), [
    ({}, TypeError, "empty"),
    ({-1: 2}, MisconfigurationError, "epochs must be ints >= 0"),
    ({0: 0}, MisconfigurationError, "factors must be ints >= 1"),
    ({0: 1.5}, MisconfigurationError, "factors must be ints >= 1"),
])
def test_bad_schedules_are_refused(scheduling, error, message):
    with pytest.raises(error, match=message):
        GradientAccumulationScheduler(scheduling)


def test_a_trainer_factor_and_the_scheduler_together_are_refused(tmp_path):
    trainer = Trainer(max_epochs=1, accumulate_grad_batches=2, callbacks=[GradientAccumulationScheduler({0: 2})],
                      **QUIET)
    with pytest.raises(ValueError, match="remove one of the two"):
        trainer.fit(TinyModule(), loader())


@pytest.mark.parametrize("step", [3, 9, 12])  # epoch 0; mid-epoch 1 (between windows); epoch 2
def test_resumed_run_ends_equal_to_the_uninterrupted_one(tmp_path, step):
    whole, resumed = resumed_equals_uninterrupted(
        seeded, lambda: [GradientAccumulationScheduler(SCHEDULE)], loader, tmp_path, step=step, max_epochs=3,
    )
    assert_same_weights(whole, resumed)
