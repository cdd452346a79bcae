"""StochasticWeightAveraging: the same weights and learning rates as a hand-written SWALR + AveragedModel loop,
batch-norm statistics recomputed for the average, and exact resume."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from auxiliary import StochasticWeightAveraging
from engineering import Callback, MisconfigurationError, Trainer
from tests.auxiliary.resuming import assert_same_weights, resumed_equals_uninterrupted
from tests.helpers import QUIET, TinyModule, tiny_loader

EPOCHS = 4  # 4 batches per epoch; SWA from epoch 2 (1-based), i.e. epochs 1, 2, 3


class Classifier(TinyModule):
    def __init__(self, batch_norm: bool = False, step_lr: bool = False) -> None:
        torch.manual_seed(0)
        super().__init__(lr=0.1)
        self.step_lr = step_lr
        if batch_norm:
            self.layer = nn.Sequential(nn.Linear(32, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        if not self.step_lr:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)}


class LearningRates(Callback):
    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def hand_swa(model: nn.Module, strategy: str) -> tuple[AveragedModel, list[float]]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    average, scheduler, lrs = AveragedModel(model, use_buffers=False), None, []
    for epoch in range(EPOCHS):
        if epoch >= 1:
            if scheduler is None:
                optimizer.param_groups[0]["initial_lr"] = 0.05
                scheduler = SWALR(optimizer, swa_lr=[0.05], anneal_epochs=2, anneal_strategy=strategy,
                                  last_epoch=EPOCHS if strategy == "cos" else -1)
            average.update_parameters(model)
        lrs.append(optimizer.param_groups[0]["lr"])
        for x, y in tiny_loader():
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return average, lrs


def fit(module: Classifier, swa: StochasticWeightAveraging, root) -> list[float]:
    lrs = LearningRates()
    Trainer(max_epochs=EPOCHS, callbacks=[swa, lrs], default_root_dir=root, **QUIET).fit(module, tiny_loader())
    return lrs.seen


@pytest.mark.parametrize("strategy", ["cos", "linear"])
def test_weights_and_learning_rates_equal_a_hand_written_swa_loop_bit_for_bit(tmp_path, strategy):
    reference = copy.deepcopy(Classifier().layer)
    average, expected_lrs = hand_swa(reference, strategy)
    module = Classifier()
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2, annealing_strategy=strategy)
    lrs = fit(module, swa, tmp_path)
    assert lrs == expected_lrs and lrs[0] == 0.1 and lrs[-1] == pytest.approx(0.05)
    assert swa.n_averaged == 3
    for mine, theirs in zip(module.layer.parameters(), average.module.parameters()):
        assert torch.equal(mine, theirs)


def test_a_float_start_is_a_fraction_of_max_epochs_and_replaces_the_users_scheduler(tmp_path):
    module = Classifier(step_lr=True)
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=0.5, annealing_epochs=1)
    lrs = fit(module, swa, tmp_path)
    assert swa.swa_start == 1 and swa.n_averaged == 3
    # StepLR halves the rate after epoch 0; from epoch 1 SWALR anneals it to swa_lrs in one epoch
    assert lrs == [0.1, 0.05, pytest.approx(0.05), pytest.approx(0.05)]


def test_batch_norm_statistics_are_recomputed_for_the_averaged_weights(tmp_path):
    reference = copy.deepcopy(Classifier(batch_norm=True).layer)
    average, _ = hand_swa(reference, "cos")
    update_bn(tiny_loader(), average.module)
    module = Classifier(batch_norm=True)
    fit(module, StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2), tmp_path)
    norm, expected = module.layer[1], average.module[1]
    assert torch.allclose(norm.running_mean, expected.running_mean, atol=1e-6)
    assert torch.allclose(norm.running_var, expected.running_var, atol=1e-6)
    assert norm.momentum == 0.1  # put back after the pass


@pytest.mark.parametrize("step_lr", [False, True])
@pytest.mark.parametrize("step", [2, 6, 8])  # before SWA starts, mid-epoch in it, between epochs in it
def test_resumed_run_ends_equal_to_the_uninterrupted_one(tmp_path, step_lr, step):
    recorders: list[LearningRates] = []

    def callbacks():
        recorders.append(LearningRates())
        return [StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2), recorders[-1]]

    whole, resumed = resumed_equals_uninterrupted(
        lambda: Classifier(step_lr=step_lr), callbacks, tiny_loader, tmp_path, step=step, max_epochs=EPOCHS,
    )
    assert_same_weights(whole, resumed)
    # the last epoch's training never reaches the average: its learning rate is checked on its own
    whole_lrs, resumed_lrs = recorders[0].seen, recorders[1].seen
    assert resumed_lrs == whole_lrs[-len(resumed_lrs):]


@pytest.mark.parametrize(("arguments", "message"), [
    (dict(swa_lrs=0.05, swa_epoch_start=0), "swa_epoch_start"),
    (dict(swa_lrs=0.05, swa_epoch_start=1.5), "swa_epoch_start"),
    (dict(swa_lrs=-1.0), "swa_lrs"),
    (dict(swa_lrs=[0.1, 1]), "swa_lrs"),
    (dict(swa_lrs=0.05, annealing_strategy="step"), "annealing_strategy"),
])
def test_bad_arguments_are_refused_with_the_fix(arguments, message):
    with pytest.raises(MisconfigurationError, match=message):
        StochasticWeightAveraging(**arguments)


def test_a_float_start_without_max_epochs_is_refused(tmp_path):
    trainer = Trainer(max_epochs=-1, max_steps=4, callbacks=[StochasticWeightAveraging(swa_lrs=0.05)], **QUIET)
    with pytest.raises(MisconfigurationError, match="as an epoch number"):
        trainer.fit(Classifier(), tiny_loader())
