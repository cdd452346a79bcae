"""Set-ups that used to run without a word and did something else than asked: each now raises or warns, naming
the fix, in Lightning's words where Lightning has them."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engineering import MisconfigurationError, ModelCheckpoint, Trainer
from helpers import QUIET, TinyModule, tiny_loader


def test_an_int_val_check_interval_longer_than_the_epoch_is_lightnings_error(tmp_path):
    trainer = Trainer(max_epochs=1, val_check_interval=5, default_root_dir=tmp_path, **QUIET)
    with pytest.raises(ValueError, match=r"`val_check_interval` \(5\) must be less than or equal to the number of the "
                                         r"training batches \(4\)\. If you want to disable validation set "
                                         r"`limit_val_batches` to 0\.0 instead.*`check_val_every_n_epoch=None`"):
        trainer.fit(TinyModule(), tiny_loader(), tiny_loader())


def test_an_int_val_check_interval_counting_across_epochs_is_allowed(tmp_path):
    trainer = Trainer(max_epochs=2, val_check_interval=5, check_val_every_n_epoch=None, default_root_dir=tmp_path,
                      **QUIET)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader())
    assert "val_loss" in trainer.callback_metrics  # batch 5 of 8 validated


class SchedulesAnotherOptimizer(TinyModule):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        stray = torch.optim.SGD(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(stray, step_size=1)]


def test_a_scheduler_of_an_optimizer_that_was_not_returned_is_refused(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    with pytest.raises(MisconfigurationError, match=r"Some schedulers are attached with an optimizer that wasn't "
                                                    r"returned from `configure_optimizers`\. StepLR steps a SGD"):
        trainer.fit(SchedulesAnotherOptimizer(), tiny_loader())


class LogsTwiceDifferently(TinyModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)  # logs train_loss with prog_bar=True
        self.log("train_loss", loss, prog_bar=False)
        return loss


class LogsTwiceAlike(TinyModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("train_loss", loss * 2, prog_bar=True)
        return loss


class ChangesItsArgumentsAtTheFourthBatch(TinyModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=batch_idx < 3)
        return loss


class ChangesItsEpochLogAtTheFourthBatch(TinyModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, reduce_fx="max" if batch_idx < 3 else "min")
        return loss


# After three batches that logged alike (the path a repeated log takes), the fourth changes prog_bar, or reduce_fx.
@pytest.mark.parametrize("module, steps_done", [(LogsTwiceDifferently, 0), (ChangesItsArgumentsAtTheFourthBatch, 3),
                                                (ChangesItsEpochLogAtTheFourthBatch, 3)])
def test_one_key_logged_twice_in_a_hook_with_different_arguments_is_lightnings_error(tmp_path, module, steps_done):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    with pytest.raises(MisconfigurationError, match=r"You called `self.log\(train_loss, \.\.\.\)` twice in "
                                                    r"`training_step` with different arguments\. This is not allowed"):
        trainer.fit(module(), tiny_loader())
    assert trainer.global_step == steps_done


def test_one_key_logged_twice_alike_keeps_the_last_value_as_before(tmp_path):
    trainer = Trainer(max_epochs=1, limit_train_batches=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(LogsTwiceAlike(), tiny_loader())
    assert "train_loss" in trainer.callback_metrics


def test_two_stateful_callbacks_with_one_state_key_are_lightnings_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"Found more than one stateful callback of type `ModelCheckpoint`.*"
                                           r"HINT: The `callback.state_key` must be unique.*give them different"):
        Trainer(callbacks=[ModelCheckpoint(monitor="val_loss"), ModelCheckpoint(monitor="val_loss", dirpath=tmp_path)],
                default_root_dir=tmp_path)


def test_two_model_checkpoints_that_differ_in_what_they_follow_are_fine(tmp_path):
    Trainer(callbacks=[ModelCheckpoint(monitor="val_loss"), ModelCheckpoint(monitor="train_loss")],
            default_root_dir=tmp_path)


def test_more_cpu_processes_than_cores_warns(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with pytest.warns(UserWarning, match=r"Trainer\(devices=3\) on the CPU starts 3 processes, but this process may "
                                         r"use 2 CPU core\(s\).*Set devices=2 or fewer"):
        Trainer(accelerator="cpu", strategy="ddp", devices=3, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(accelerator="cpu", strategy="ddp", devices=2, **QUIET)


def test_an_empty_validation_loader_warns_naming_what_to_check(tmp_path):
    empty = DataLoader(TensorDataset(torch.empty(0, 32), torch.empty(0, dtype=torch.long)), batch_size=4)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    with pytest.warns(UserWarning, match=r"Total length of `DataLoader` across ranks is zero\. Please make sure this "
                                         r"was your intention: the validation loop runs no batch of it\. Check the "
                                         r"validation dataset and batch_size"):
        trainer.fit(TinyModule(), tiny_loader(), empty)
    assert trainer.global_step == 4
    with pytest.warns(UserWarning, match=r"the validation loop runs no batch"):
        trainer.validate(TinyModule(), empty)


def test_an_empty_list_of_validation_loaders_means_none_and_says_nothing(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(TinyModule(), tiny_loader(), [])
    assert trainer.global_step == 4
