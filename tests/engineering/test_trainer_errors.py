"""Misuse of the Trainer gives one clear message that names the fix; the loop-shaping flags do what they say."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback, MisconfigurationError, Trainer
from research import LightningModule

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


def loader(samples: int = 20, batch_size: int = 2, shuffle: bool = False) -> DataLoader:
    x = torch.arange(samples, dtype=torch.float32).unsqueeze(1)
    return DataLoader(TensorDataset(x, 2 * x), batch_size=batch_size, shuffle=shuffle)


def trainer(tmp_path, **flags) -> Trainer:
    options = dict(QUIET, default_root_dir=tmp_path, max_epochs=1, num_sanity_val_steps=0)
    options.update(flags)
    return Trainer(**options)


class Recorder(LightningModule):
    """Trains a linear layer and records what ran: the first value of every batch, and validations."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.train_batches: list[tuple[int, float]] = []   # (epoch, first x of the batch)
        self.val_batches: list[tuple[int, int]] = []       # (epoch, batch_idx)
        self.validations: list[tuple[int, int]] = []       # (epoch, training batch_idx it followed)
        self.last_batch_idx = -1

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.train_batches.append((self.current_epoch, float(x[0, 0])))
        self.last_batch_idx = batch_idx
        return F.mse_loss(self.layer(x) * 1e-3, y * 1e-3)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.val_batches.append((self.current_epoch, batch_idx))

    def on_validation_epoch_start(self):
        self.validations.append((self.current_epoch, self.last_batch_idx))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def epochs_trained(self) -> list[int]:
        return sorted({epoch for epoch, _ in self.train_batches})


# -------------------------------------------------------------------------------------------------
# The module
# -------------------------------------------------------------------------------------------------
def test_module_without_training_step(tmp_path):
    class NoStep(LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(1, 1)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(Exception, match=r"training_step.*def training_step\(self, batch, batch_idx\)"):
        trainer(tmp_path).fit(NoStep(), loader())


def test_module_without_configure_optimizers(tmp_path):
    class NoOptimizers(Recorder):
        configure_optimizers = LightningModule.configure_optimizers

    module = NoOptimizers()
    with pytest.raises(Exception, match=r"configure_optimizers.*torch\.optim"):
        trainer(tmp_path).fit(module, loader())
    assert module.train_batches == []


@pytest.mark.parametrize(("returned", "phrase"), [
    ("sgd", "not a supported form. Return an optimizer"),
    (None, "returned None. Return an optimizer"),
    ([], "not a supported form"),
    ({"lr": 0.1}, "it needs 'optimizer'"),
])
def test_configure_optimizers_returning_something_else(tmp_path, returned, phrase):
    class Wrong(Recorder):
        def configure_optimizers(self):
            return returned

    module = Wrong()
    with pytest.raises(MisconfigurationError, match=phrase):
        trainer(tmp_path).fit(module, loader())
    assert module.train_batches == []


def test_training_step_returning_a_non_scalar_loss(tmp_path):
    class Vector(Recorder):
        def training_step(self, batch, batch_idx):
            x, y = batch
            return (self.layer(x) - y) ** 2  # forgot the .mean()

    with pytest.raises(MisconfigurationError, match=r"shape \(2, 1\).*scalar.*loss\.mean\(\)"):
        trainer(tmp_path).fit(Vector(), loader())


def test_training_step_returning_a_dict_without_loss(tmp_path):
    class NoLoss(Recorder):
        def training_step(self, batch, batch_idx):
            return {"total": super().training_step(batch, batch_idx)}

    with pytest.raises(MisconfigurationError, match=r"without 'loss' \(keys: \['total'\]\).*under 'loss'"):
        trainer(tmp_path).fit(NoLoss(), loader())


def test_training_step_returning_a_dict_with_loss_trains(tmp_path):
    class WithLoss(Recorder):
        def training_step(self, batch, batch_idx):
            return {"loss": super().training_step(batch, batch_idx), "extra": 1}

    run = trainer(tmp_path, limit_train_batches=3)
    run.fit(WithLoss(), loader())
    assert run.global_step == 3


# -------------------------------------------------------------------------------------------------
# Flags
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "phrase"), [
    ({"limit_train_batches": -1}, r"limit_train_batches=-1 is negative; pass 0 or more"),
    ({"limit_val_batches": 1.5}, r"limit_val_batches=1\.5 must be a fraction in \[0\.0, 1\.0\]"),
    ({"precision": "17"}, r"precision='17' is not supported; choose one of .*'bf16-mixed'"),
    ({"accelerator": "quantum"}, r"accelerator='quantum' is not supported; choose one of .*'cpu'"),
    ({"gradient_clip_algorithm": "l3"}, r"gradient_clip_algorithm='l3'.*use 'norm' or 'value'"),
    ({"max_epochs": "3"}, r"max_epochs='3' must be an int"),
    ({"devices": 0}, r"devices=0 must be a positive count"),
    ({"log_every_n_steps": 0}, r"log_every_n_steps=0 must be an int >= 1"),
    ({"val_check_interval": 0}, r"val_check_interval=0 must be at least 1 batch"),
    ({"val_check_interval": 1.5}, r"val_check_interval=1\.5 must be a fraction in \(0, 1\]"),
    ({"gradient_clip_val": -1.0}, r"gradient_clip_val=-1\.0 must be a non-negative number"),
    ({"max_time": "1 hour"}, r"max_time='1 hour'.*'DD:HH:MM:SS'"),
    ({"strategy": "ddp_magic"}, r"strategy='ddp_magic' is not supported"),
])
def test_bad_flag_values_are_refused_at_construction(tmp_path, flags, phrase):
    with pytest.raises(MisconfigurationError, match=phrase):
        Trainer(default_root_dir=tmp_path, **{**QUIET, **flags})


def test_misconfiguration_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        Trainer(default_root_dir=tmp_path, precision="17", **QUIET)


def test_unknown_flag_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="foo"):
        Trainer(foo=1, default_root_dir=tmp_path, **QUIET)


def test_positional_flags_are_refused(tmp_path):
    with pytest.raises(TypeError):
        Trainer("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_says_what_is_available(tmp_path):
    with pytest.raises(MisconfigurationError, match=r"accelerator='cuda'.*not available.*Available: \['cpu'"):
        Trainer(accelerator="cuda", default_root_dir=tmp_path, **QUIET)


# -------------------------------------------------------------------------------------------------
# Data and entry points
# -------------------------------------------------------------------------------------------------
def test_fit_without_training_data(tmp_path):
    with pytest.raises(MisconfigurationError, match="fit needs training data: pass train_dataloaders"):
        trainer(tmp_path).fit(Recorder())


def test_fit_with_an_empty_training_loader(tmp_path):
    empty = DataLoader(TensorDataset(torch.empty(0, 1), torch.empty(0, 1)), batch_size=2)
    with pytest.raises(MisconfigurationError, match="training dataloader is empty.*batch_size"):
        trainer(tmp_path).fit(Recorder(), empty)


def test_fit_with_a_missing_checkpoint_trains_nothing(tmp_path):
    module = Recorder()
    before = {name: value.clone() for name, value in module.state_dict().items()}
    missing = tmp_path / "nope.ckpt"

    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt.*does not exist.*ckpt_path=None"):
        trainer(tmp_path).fit(module, loader(), ckpt_path=missing)

    assert module.train_batches == []
    assert all(torch.equal(before[name], value) for name, value in module.state_dict().items())


def test_validate_without_a_model_on_a_fresh_trainer(tmp_path):
    with pytest.raises(MisconfigurationError, match=r"validate\(\) needs a model: pass it"):
        trainer(tmp_path).validate()


def test_fit_with_something_that_is_not_a_module(tmp_path):
    with pytest.raises(TypeError, match="needs a LightningModule, got Linear"):
        trainer(tmp_path).fit(nn.Linear(1, 1), loader())


# -------------------------------------------------------------------------------------------------
# Flags that shape the loop
# -------------------------------------------------------------------------------------------------
def test_limit_train_batches_as_a_fraction(tmp_path):
    module = Recorder()
    run = trainer(tmp_path, limit_train_batches=0.25, max_epochs=2)
    run.fit(module, loader())  # 10 batches

    assert run.num_training_batches == 2
    assert [x for _, x in module.train_batches] == [0.0, 2.0, 0.0, 2.0]
    assert run.global_step == 4


def test_overfit_batches_reads_the_same_batches_in_order(tmp_path):
    torch.manual_seed(0)
    module = Recorder()
    run = trainer(tmp_path, overfit_batches=2, max_epochs=3)
    run.fit(module, loader(shuffle=True))

    # The shuffling loader is read sequentially, and only its first two batches.
    assert module.train_batches == [(epoch, x) for epoch in range(3) for x in (0.0, 2.0)]
    assert run.num_training_batches == 2


def test_fast_dev_run_runs_one_train_and_one_val_batch(tmp_path):
    module = Recorder()
    run = trainer(tmp_path, fast_dev_run=True, max_epochs=5, num_sanity_val_steps=2)
    run.fit(module, loader(), loader())

    assert len(module.train_batches) == 1
    assert module.val_batches == [(0, 0)]
    assert run.global_step == 1


def test_max_steps_stops_mid_epoch(tmp_path):
    module = Recorder()
    run = trainer(tmp_path, max_steps=3, max_epochs=-1)
    run.fit(module, loader())  # 10 batches an epoch

    assert [x for _, x in module.train_batches] == [0.0, 2.0, 4.0]
    assert run.global_step == 3


def test_max_steps_with_accumulation_counts_optimizer_steps(tmp_path):
    module = Recorder()
    run = trainer(tmp_path, max_steps=2, accumulate_grad_batches=3)
    run.fit(module, loader())

    assert len(module.train_batches) == 6
    assert run.global_step == 2


class StopAt(Callback):
    """Sets should_stop at the end of the given training epochs."""

    def __init__(self, epochs) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch in self.epochs:
            trainer.should_stop = True


def test_should_stop_without_min_epochs_stops_after_that_epoch(tmp_path):
    module = Recorder()
    trainer(tmp_path, max_epochs=6, limit_train_batches=2, callbacks=[StopAt({0})]).fit(module, loader())
    assert module.epochs_trained() == [0]


def test_min_epochs_keeps_training_until_reached_then_honours_the_stop(tmp_path):
    # Lightning keeps the stop request pending while min_epochs is not met, and stops as soon as it is:
    # a request made in epoch 0 with min_epochs=3 ends the run after epoch 2, not at max_epochs.
    module = Recorder()
    run = trainer(tmp_path, min_epochs=3, max_epochs=6, limit_train_batches=2, callbacks=[StopAt({0})])
    run.fit(module, loader())

    assert module.epochs_trained() == [0, 1, 2]
    assert run.current_epoch == 3


def test_min_epochs_with_a_stop_every_epoch(tmp_path):
    module = Recorder()
    trainer(tmp_path, min_epochs=3, max_epochs=6, limit_train_batches=2, callbacks=[StopAt(range(10))]).fit(
        module, loader()
    )
    assert module.epochs_trained() == [0, 1, 2]


def test_max_time_zero_stops_after_the_first_batch(tmp_path):
    module = Recorder()
    run = trainer(tmp_path, max_time="00:00:00:00", max_epochs=None)
    run.fit(module, loader())

    assert len(module.train_batches) == 1
    assert run.global_step == 1


def test_val_check_interval_half_validates_twice_an_epoch(tmp_path):
    module = Recorder()
    run = trainer(tmp_path, val_check_interval=0.5, max_epochs=2, limit_val_batches=1)
    run.fit(module, loader(samples=8), loader())  # 4 training batches

    assert module.validations == [(0, 1), (0, 3), (1, 1), (1, 3)]
    assert run.val_check_batch == 2


def test_val_check_interval_as_batches(tmp_path):
    module = Recorder()
    trainer(tmp_path, val_check_interval=3, limit_val_batches=1).fit(module, loader(samples=12), loader())
    assert module.validations == [(0, 2), (0, 5)]


def test_check_val_every_n_epoch(tmp_path):
    module = Recorder()
    trainer(tmp_path, check_val_every_n_epoch=2, max_epochs=4, limit_train_batches=2, limit_val_batches=1).fit(
        module, loader(), loader()
    )
    assert module.validations == [(1, 1), (3, 1)]


def test_limit_val_batches_zero_turns_validation_off(tmp_path):
    module = Recorder()
    trainer(tmp_path, limit_val_batches=0, limit_train_batches=2, num_sanity_val_steps=2).fit(module, loader(), loader())
    assert module.val_batches == []


def test_sanity_check_runs_num_sanity_val_steps_batches(tmp_path):
    module = Recorder()
    trainer(tmp_path, num_sanity_val_steps=2, limit_train_batches=1, limit_val_batches=3).fit(
        module, loader(), loader()
    )
    # two sanity batches before training, then the real validation of three batches
    assert module.val_batches == [(0, 0), (0, 1), (0, 0), (0, 1), (0, 2)]


def test_estimated_stepping_batches_after_fit(tmp_path):
    run = trainer(tmp_path, max_epochs=2, accumulate_grad_batches=3)
    run.fit(Recorder(), loader())  # 10 batches: ceil(10 / 3) = 4 steps an epoch
    assert run.estimated_stepping_batches == 8
    assert run.global_step == 8


def test_estimated_stepping_batches_in_configure_optimizers(tmp_path):
    # The documented use: OneCycleLR(total_steps=self.trainer.estimated_stepping_batches).
    seen = []

    class OneCycle(Recorder):
        def configure_optimizers(self):
            seen.append(self.trainer.estimated_stepping_batches)
            return super().configure_optimizers()

    trainer(tmp_path, max_epochs=2, accumulate_grad_batches=3).fit(OneCycle(), loader())
    assert seen == [8]


@pytest.mark.parametrize(("flags", "expected"), [
    ({"max_epochs": 3, "max_steps": 5}, 5),
    ({"max_epochs": -1, "max_steps": 7}, 7),
    ({"max_epochs": 2, "limit_train_batches": 0.5}, 10),
])
def test_estimated_stepping_batches_with_limits(tmp_path, flags, expected):
    run = trainer(tmp_path, **flags)
    run.fit(Recorder(), loader())
    assert run.estimated_stepping_batches == expected


def test_estimated_stepping_batches_is_infinite_without_limits(tmp_path):
    run = trainer(tmp_path, max_epochs=-1, max_time={"seconds": 0})
    run.fit(Recorder(), loader())
    assert run.estimated_stepping_batches == math.inf


def test_num_training_and_val_batches(tmp_path):
    run = trainer(tmp_path, limit_train_batches=3, limit_val_batches=0.5)
    run.fit(Recorder(), loader(), [loader(samples=8), loader(samples=4)])

    assert run.num_training_batches == 3
    assert run.num_val_batches == [2, 1]


def test_num_val_batches_after_validate(tmp_path):
    run = trainer(tmp_path, limit_val_batches=3)
    run.validate(Recorder(), loader(), verbose=False)
    assert run.num_val_batches == [3]


@pytest.mark.parametrize(("flags", "phrase"), [
    ({"benchmark": "yes"}, r"benchmark='yes' must be True or False"),
    ({"use_distributed_sampler": 1}, r"use_distributed_sampler=1 must be True or False"),
    ({"default_root_dir": 3}, r"default_root_dir=3 must be a path"),
])
def test_flags_once_unchecked_are_refused_at_construction(tmp_path, flags, phrase):
    with pytest.raises(MisconfigurationError, match=phrase):
        Trainer(**flags)


def test_fast_dev_run_shapes_what_runs_use_without_overwriting_the_flags_given(tmp_path):
    trainer = Trainer(fast_dev_run=2, max_epochs=5, limit_train_batches=10, default_root_dir=tmp_path)
    assert (trainer.max_epochs, trainer.max_steps, trainer.limit_train_batches) == (1, 2, 2)
    assert not trainer.enable_checkpointing and trainer.loggers == []
    assert (trainer.config.max_epochs, trainer.config.limit_train_batches) == (5, 10)


def test_setting_a_flag_on_the_trainer_validates_it(tmp_path):
    trainer = Trainer(default_root_dir=tmp_path, logger=False)
    trainer.accumulate_grad_batches = 4
    assert trainer.accumulate_grad_batches == 4 and trainer.config.accumulate_grad_batches == 4
    with pytest.raises(MisconfigurationError, match=r"accumulate_grad_batches=0 must be an int >= 1"):
        trainer.accumulate_grad_batches = 0
    assert trainer.accumulate_grad_batches == 4


def test_a_whole_float_limit_above_one_means_that_many_batches_as_in_lightning(tmp_path):
    trainer = Trainer(limit_train_batches=2.0, limit_val_batches=0.5, default_root_dir=tmp_path, **QUIET)
    assert (trainer.limit_train_batches, trainer.limit_val_batches) == (2, 0.5)
    assert isinstance(trainer.limit_train_batches, int)
