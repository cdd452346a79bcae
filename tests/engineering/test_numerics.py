"""The Trainer's numerics are those of a hand-written PyTorch loop: same op order, same bits.

Each test trains one model with the Trainer and a copy of it with the loop a user would write by
hand (same initial weights, same batches in the same order), then compares the final weights.
"""

from __future__ import annotations

import copy
import traceback

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback, Trainer, seed_everything
from research import LightningModule
from tests.helpers import TinyModule, regression_dataset, tiny_loader

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)
BATCHES = 5  # odd on purpose: with accumulate_grad_batches=2 the last window holds one batch


def dataset() -> TensorDataset:
    return regression_dataset(BATCHES)


def loader() -> DataLoader:
    return DataLoader(dataset(), batch_size=4, shuffle=False)


def network() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))


class Regressor(LightningModule):
    def __init__(self, make_optimizer, make_scheduler=None, interval: str = "step") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = network()
        self.make_optimizer, self.make_scheduler, self.interval = make_optimizer, make_scheduler, interval

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return F.mse_loss(self.net(inputs), targets)

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        scheduler = {"scheduler": self.make_scheduler(optimizer), "interval": self.interval}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def hand_loop(net, make_optimizer, epochs=1, accumulate=1, clip_val=None, clip_algorithm="norm",
              make_scheduler=None, skip=()):
    """The loop a user writes: loss / accumulate, backward, clip after the window's last backward, step."""
    optimizer = make_optimizer(net.parameters())
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    clipped = False
    for _ in range(epochs):
        batches = list(loader())
        for batch_idx, (inputs, targets) in enumerate(batches):
            if batch_idx in skip:
                continue
            loss = F.mse_loss(net(inputs), targets)
            if accumulate > 1:
                loss = loss / accumulate
            if batch_idx % accumulate == 0:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if (batch_idx + 1) % accumulate == 0 or batch_idx == len(batches) - 1:
                if clip_val is not None:
                    parameters = list(net.parameters())
                    if clip_algorithm == "norm":
                        norm = torch.nn.utils.clip_grad_norm_(parameters, clip_val)
                        clipped |= bool(norm > clip_val)
                    else:
                        clipped |= any(bool(p.grad.abs().max() > clip_val) for p in parameters)
                        torch.nn.utils.clip_grad_value_(parameters, clip_val)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
    if clip_val is not None:
        assert clipped, "the reference never clipped: the test would not notice clipping being skipped"
    return optimizer


def assert_same_weights(trained: nn.Module, reference: nn.Module) -> None:
    for (name, value), expected in zip(trained.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(value, expected), f"{name} differs by {(value - expected).abs().max().item():.3g}"


def sgd(parameters):
    return torch.optim.SGD(parameters, lr=0.05)


def fit(model: LightningModule, tmp_path, **flags) -> Trainer:
    trainer = Trainer(default_root_dir=tmp_path, **{"max_epochs": 1, **QUIET, **flags})
    trainer.fit(model, loader())
    return trainer


def test_plain_sgd_matches_a_hand_written_loop(tmp_path):
    model = Regressor(sgd)
    reference = copy.deepcopy(model.net)
    trainer = fit(model, tmp_path)

    hand_loop(reference, sgd)
    assert_same_weights(model.net, reference)
    assert trainer.global_step == BATCHES


def test_accumulation_with_norm_clipping_matches_a_hand_written_loop(tmp_path):
    model = Regressor(sgd)
    reference = copy.deepcopy(model.net)
    trainer = fit(model, tmp_path, accumulate_grad_batches=2, gradient_clip_val=0.5)

    hand_loop(reference, sgd, accumulate=2, clip_val=0.5, clip_algorithm="norm")
    assert_same_weights(model.net, reference)
    assert trainer.global_step == 3  # windows {0, 1}, {2, 3}, {4}


def test_value_clipping_matches_a_hand_written_loop(tmp_path):
    model = Regressor(sgd)
    reference = copy.deepcopy(model.net)
    fit(model, tmp_path, gradient_clip_val=0.05, gradient_clip_algorithm="value")

    hand_loop(reference, sgd, clip_val=0.05, clip_algorithm="value")
    assert_same_weights(model.net, reference)


def test_adam_with_a_step_interval_scheduler_matches_a_hand_written_loop(tmp_path):
    def adam(parameters):
        return torch.optim.Adam(parameters, lr=0.05)

    def step_lr(optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)

    model = Regressor(adam, step_lr, interval="step")
    reference = copy.deepcopy(model.net)
    trainer = fit(model, tmp_path, max_epochs=2)

    optimizer = hand_loop(reference, adam, epochs=2, make_scheduler=step_lr)
    assert_same_weights(model.net, reference)
    assert trainer.optimizers[0].param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == 0.05 * 0.5**5


class SkipsBatchTwo(Regressor):
    """training_step returns None for batch 2: Lightning skips backward and the update for it."""

    def __init__(self) -> None:
        super().__init__(lambda parameters: torch.optim.SGD(parameters, lr=0.05, momentum=0.9))
        self.around_skipped: list[dict[str, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        return None if batch_idx == 2 else super().training_step(batch, batch_idx)

    def on_train_batch_start(self, batch, batch_idx):
        if batch_idx == 2:
            self.around_skipped.append(copy.deepcopy(self.net.state_dict()))

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if batch_idx == 2:
            self.around_skipped.append(copy.deepcopy(self.net.state_dict()))


def test_training_step_returning_none_skips_the_batch(tmp_path):
    model = SkipsBatchTwo()
    reference = copy.deepcopy(model.net)
    fit(model, tmp_path)

    before, after = model.around_skipped
    for name in before:
        assert torch.equal(before[name], after[name]), f"{name} changed on the skipped batch"
    hand_loop(reference, model.make_optimizer, skip={2})
    assert_same_weights(model.net, reference)  # the momentum buffers did not move either


class Dropout(LightningModule):
    """Random init, dropout and a shuffled loader: three RNG consumers that seeding must pin."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))
        self.deterministic_during_fit: list[bool] = []

    def training_step(self, batch, batch_idx):
        self.deterministic_during_fit.append(torch.are_deterministic_algorithms_enabled())
        inputs, targets = batch
        return F.mse_loss(self.net(inputs), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def seeded_fit(tmp_path, seed: int) -> Dropout:
    seed_everything(seed)
    model = Dropout()
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=2, deterministic=True, **QUIET)
    trainer.fit(model, DataLoader(dataset(), batch_size=4, shuffle=True))
    return model


def test_seed_everything_and_deterministic_give_identical_weights(tmp_path):
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    first, second = seeded_fit(tmp_path, 7), seeded_fit(tmp_path, 7)

    assert_same_weights(first.net, second.net)
    assert first.deterministic_during_fit == [True] * 2 * BATCHES
    assert torch.are_deterministic_algorithms_enabled() == deterministic_before  # restored after fit
    other = seeded_fit(tmp_path, 8)
    assert not torch.equal(other.net[0].weight, first.net[0].weight)  # the seed is what made them equal


def test_anomaly_detection_is_left_as_the_user_set_it(tmp_path):
    seen = []

    class Records(TinyModule):
        def training_step(self, batch, batch_idx):
            seen.append(torch.is_anomaly_enabled())
            return super().training_step(batch, batch_idx)

    with torch.autograd.set_detect_anomaly(True):
        Trainer(max_epochs=1, limit_train_batches=1, default_root_dir=tmp_path, **QUIET).fit(Records(), tiny_loader())
    Trainer(max_epochs=1, limit_train_batches=1, detect_anomaly=True, default_root_dir=tmp_path, **QUIET).fit(
        Records(), tiny_loader())
    assert seen == [True, True] and not torch.is_anomaly_enabled()


class RecordsGradientsAtTrainingStep(TinyModule):
    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__()
        self.saw_no_gradients: list[bool] = []

    def training_step(self, batch, batch_idx):
        self.saw_no_gradients.append(all(parameter.grad is None for parameter in self.parameters()))
        return super().training_step(batch, batch_idx)


class WatchesTheZeroing(Callback):
    def on_before_zero_grad(self, trainer, pl_module, optimizer):
        pass


def test_unwatched_gradients_are_zeroed_before_training_step_watched_ones_after_as_in_lightning(tmp_path):
    flags = dict(max_epochs=1, accumulate_grad_batches=2, default_root_dir=tmp_path, enable_progress_bar=False,
                 enable_model_summary=False, logger=False, enable_checkpointing=False)
    unwatched, watched = RecordsGradientsAtTrainingStep(), RecordsGradientsAtTrainingStep()
    Trainer(**flags).fit(unwatched, tiny_loader())
    Trainer(callbacks=[WatchesTheZeroing()], **flags).fit(watched, tiny_loader())

    # Windows of 2 batches: the second batch of a window always sees the first one's gradients.
    assert unwatched.saw_no_gradients == [True, False, True, False]  # zeroed first, as a hand-written loop
    assert watched.saw_no_gradients == [True, False, False, False]  # Lightning's order: zeroed after training_step
    for mine, theirs in zip(unwatched.parameters(), watched.parameters()):
        assert torch.equal(mine, theirs)


class HearsBackward(Callback):
    def on_after_backward(self, trainer, pl_module):
        pass


class RecordsItsCaller(Regressor):
    def training_step(self, batch, batch_idx):
        self.caller = traceback.extract_stack()[-2].name
        return super().training_step(batch, batch_idx)


def test_the_plain_step_and_the_watched_step_give_the_weights_of_a_hand_written_loop(tmp_path):
    adam = lambda parameters: torch.optim.Adam(parameters, lr=0.01)  # noqa: E731
    plain, watched = RecordsItsCaller(adam), RecordsItsCaller(adam)
    expected = copy.deepcopy(plain.net)
    Trainer(max_epochs=3, default_root_dir=tmp_path, **QUIET).fit(plain, loader())
    Trainer(max_epochs=3, callbacks=[HearsBackward()], default_root_dir=tmp_path, **QUIET).fit(watched, loader())
    hand_loop(expected, adam, epochs=3)

    assert (plain.caller, watched.caller) == ("plain", "forward_backward")  # both paths ran
    for mine, watched_one, theirs in zip(plain.net.parameters(), watched.net.parameters(), expected.parameters()):
        assert torch.equal(mine, theirs) and torch.equal(watched_one, theirs)
