"""The order in which the Trainer calls callback hooks and module hooks, pinned against Lightning 2.x.

Lightning's rule: for every event the callbacks' hook runs first, then the module's hook of the same
name; at ``on_train_epoch_end`` the module sits between ordinary and monitoring callbacks, so that
what it logs there can stop training or choose the checkpoint.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback, ModelCheckpoint, Trainer
from engineering.events import HOOK_EVENTS
from research import LightningModule

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


def loader(batches: int = 4, batch_size: int = 2) -> DataLoader:
    inputs = torch.randn(batches * batch_size, 4, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(inputs), batch_size=batch_size)


# -------------------------------------------------------------------------------------------------
# Recorders: every Callback hook and every LightningModule hook appends its name to one list
# -------------------------------------------------------------------------------------------------
class HookRecorder(Callback):
    """Overrides every Callback hook, with Lightning's signatures; records ``Callback.<name>``."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.stages: list[str] = []

    def _record(self, name: str) -> None:
        self.calls.append(f"Callback.{name}")

    def setup(self, trainer, pl_module, stage):
        self.stages.append(stage)
        self._record("setup")

    def teardown(self, trainer, pl_module, stage):
        self.stages.append(stage)
        self._record("teardown")

    def on_fit_start(self, trainer, pl_module):
        self._record("on_fit_start")

    def on_fit_end(self, trainer, pl_module):
        self._record("on_fit_end")

    def on_sanity_check_start(self, trainer, pl_module):
        self._record("on_sanity_check_start")

    def on_sanity_check_end(self, trainer, pl_module):
        self._record("on_sanity_check_end")

    def on_train_start(self, trainer, pl_module):
        self._record("on_train_start")

    def on_train_end(self, trainer, pl_module):
        self._record("on_train_end")

    def on_train_epoch_start(self, trainer, pl_module):
        self._record("on_train_epoch_start")

    def on_train_epoch_end(self, trainer, pl_module):
        self._record("on_train_epoch_end")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._record("on_train_batch_start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._record("on_train_batch_end")

    def on_before_zero_grad(self, trainer, pl_module, optimizer):
        self._record("on_before_zero_grad")

    def on_before_backward(self, trainer, pl_module, loss):
        self._record("on_before_backward")

    def on_after_backward(self, trainer, pl_module):
        self._record("on_after_backward")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self._record("on_before_optimizer_step")

    def on_validation_start(self, trainer, pl_module):
        self._record("on_validation_start")

    def on_validation_end(self, trainer, pl_module):
        self._record("on_validation_end")

    def on_validation_epoch_start(self, trainer, pl_module):
        self._record("on_validation_epoch_start")

    def on_validation_epoch_end(self, trainer, pl_module):
        self._record("on_validation_epoch_end")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._record("on_validation_batch_start")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._record("on_validation_batch_end")

    def on_test_start(self, trainer, pl_module):
        self._record("on_test_start")

    def on_test_end(self, trainer, pl_module):
        self._record("on_test_end")

    def on_test_epoch_start(self, trainer, pl_module):
        self._record("on_test_epoch_start")

    def on_test_epoch_end(self, trainer, pl_module):
        self._record("on_test_epoch_end")

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._record("on_test_batch_start")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._record("on_test_batch_end")

    def on_predict_start(self, trainer, pl_module):
        self._record("on_predict_start")

    def on_predict_end(self, trainer, pl_module):
        self._record("on_predict_end")

    def on_predict_epoch_start(self, trainer, pl_module):
        self._record("on_predict_epoch_start")

    def on_predict_epoch_end(self, trainer, pl_module):
        self._record("on_predict_epoch_end")

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._record("on_predict_batch_start")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._record("on_predict_batch_end")

    def on_exception(self, trainer, pl_module, exception):
        self._record("on_exception")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._record("on_save_checkpoint")

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        self._record("on_load_checkpoint")


class RecordingModule(LightningModule):
    """Overrides every LightningModule hook; records its name (``optimizer_step`` after the closure ran)."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls
        self.layer = nn.Linear(4, 1)

    def _record(self, name: str) -> None:
        self.calls.append(name)

    # -- configuration -----------------------------------------------------------------------
    def configure_callbacks(self):
        self._record("configure_callbacks")
        return []

    def prepare_data(self):
        self._record("prepare_data")

    def setup(self, stage):
        self._record("setup")

    def configure_model(self):
        self._record("configure_model")

    def configure_optimizers(self):
        self._record("configure_optimizers")
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def teardown(self, stage):
        self._record("teardown")

    # -- steps ---------------------------------------------------------------------------------
    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        self._record("training_step")
        return self(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self._record("validation_step")
        return {"x": self(batch[0]).sum()}

    def test_step(self, batch, batch_idx):
        self._record("test_step")
        return {"y": self(batch[0]).sum()}

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        self._record("predict_step")
        return self(batch[0])

    # -- moving batches --------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch, dataloader_idx):
        self._record("on_before_batch_transfer")
        return super().on_before_batch_transfer(batch, dataloader_idx)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        self._record("transfer_batch_to_device")
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self._record("on_after_batch_transfer")
        return super().on_after_batch_transfer(batch, dataloader_idx)

    # -- optimization ----------------------------------------------------------------------------
    def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
        self._record("optimizer_zero_grad")
        super().optimizer_zero_grad(epoch, batch_idx, optimizer)

    def backward(self, loss, *args, **kwargs):
        self._record("backward")
        super().backward(loss, *args, **kwargs)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self._record("configure_gradient_clipping")
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self._record("optimizer_step")  # after: the closure (training_step, backward, ...) runs inside it

    def lr_scheduler_step(self, scheduler, metric):
        self._record("lr_scheduler_step")
        super().lr_scheduler_step(scheduler, metric)

    # -- event hooks -----------------------------------------------------------------------------
    def on_fit_start(self):
        self._record("on_fit_start")

    def on_fit_end(self):
        self._record("on_fit_end")

    def on_train_start(self):
        self._record("on_train_start")

    def on_train_end(self):
        self._record("on_train_end")

    def on_train_epoch_start(self):
        self._record("on_train_epoch_start")

    def on_train_epoch_end(self):
        self._record("on_train_epoch_end")

    def on_train_batch_start(self, batch, batch_idx):
        self._record("on_train_batch_start")

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self._record("on_train_batch_end")

    def on_before_zero_grad(self, optimizer):
        self._record("on_before_zero_grad")

    def on_before_backward(self, loss):
        self._record("on_before_backward")

    def on_after_backward(self):
        self._record("on_after_backward")

    def on_before_optimizer_step(self, optimizer):
        self._record("on_before_optimizer_step")

    def on_validation_start(self):
        self._record("on_validation_start")

    def on_validation_end(self):
        self._record("on_validation_end")

    def on_validation_epoch_start(self):
        self._record("on_validation_epoch_start")

    def on_validation_epoch_end(self):
        self._record("on_validation_epoch_end")

    def on_validation_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._record("on_validation_batch_start")

    def on_validation_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
        self._record("on_validation_batch_end")

    def on_test_start(self):
        self._record("on_test_start")

    def on_test_end(self):
        self._record("on_test_end")

    def on_test_epoch_start(self):
        self._record("on_test_epoch_start")

    def on_test_epoch_end(self):
        self._record("on_test_epoch_end")

    def on_test_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._record("on_test_batch_start")

    def on_test_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
        self._record("on_test_batch_end")

    def on_predict_start(self):
        self._record("on_predict_start")

    def on_predict_end(self):
        self._record("on_predict_end")

    def on_predict_epoch_start(self):
        self._record("on_predict_epoch_start")

    def on_predict_epoch_end(self):
        self._record("on_predict_epoch_end")

    def on_predict_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._record("on_predict_batch_start")

    def on_predict_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
        self._record("on_predict_batch_end")

    def on_save_checkpoint(self, checkpoint):
        self._record("on_save_checkpoint")

    def on_load_checkpoint(self, checkpoint):
        self._record("on_load_checkpoint")

    # -- train / eval mode around evaluation -----------------------------------------------------
    def on_validation_model_eval(self):
        self._record("on_validation_model_eval")
        super().on_validation_model_eval()

    def on_validation_model_train(self):
        self._record("on_validation_model_train")
        super().on_validation_model_train()

    def on_validation_model_zero_grad(self):
        self._record("on_validation_model_zero_grad")
        super().on_validation_model_zero_grad()

    def on_test_model_eval(self):
        self._record("on_test_model_eval")
        super().on_test_model_eval()

    def on_test_model_train(self):
        self._record("on_test_model_train")
        super().on_test_model_train()

    def on_predict_model_eval(self):
        self._record("on_predict_model_eval")
        super().on_predict_model_eval()


# Methods of LightningModule that users call rather than the Trainer: not hooks.
NOT_HOOKS = {
    "__init__", "__getstate__", "save_hyperparameters", "log", "log_dict", "optimizers", "lr_schedulers",
    "manual_backward", "clip_gradients", "toggle_optimizer", "untoggle_optimizer", "tbptt_split_batch",
    "all_gather", "print", "freeze", "unfreeze",
}


def test_the_recorders_cover_every_hook():
    callback_hooks = {name for name in HOOK_EVENTS if getattr(HookRecorder, name) is not getattr(Callback, name)}
    assert callback_hooks == set(HOOK_EVENTS)
    module_hooks = {
        name for name, value in vars(LightningModule).items() if callable(value) and name not in NOT_HOOKS
    }
    missing = {name for name in module_hooks if getattr(RecordingModule, name) is getattr(LightningModule, name)}
    assert not missing


# -------------------------------------------------------------------------------------------------
# Expected sequences, built from Lightning 2.x's own hook test (tests_pytorch/models/test_hooks.py)
# -------------------------------------------------------------------------------------------------
TRANSFER = ["on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"]


def both(name: str) -> list[str]:
    """The callbacks' hook, then the module's hook of the same name."""
    return [f"Callback.{name}", name]


def train_batch(zero_grad: bool = True, step: bool = True, scheduler: bool = False) -> list[str]:
    """One automatic-optimization batch: zero_grad opens an accumulation window, the step closes it."""
    hooks = [*TRANSFER, *both("on_train_batch_start"), "training_step"]
    if zero_grad:
        hooks += [*both("on_before_zero_grad"), "optimizer_zero_grad"]
    hooks += [*both("on_before_backward"), "backward", *both("on_after_backward")]
    if step:
        hooks += [*both("on_before_optimizer_step"), "configure_gradient_clipping", "optimizer_step"]
    if scheduler:
        hooks += ["lr_scheduler_step"]
    return hooks + both("on_train_batch_end")


def evaluation(stage: str, step: str, batches: int, model_train: bool = True) -> list[str]:
    hooks = [f"on_{stage}_model_eval", *both(f"on_{stage}_start"), *both(f"on_{stage}_epoch_start")]
    for _ in range(batches):
        hooks += [*TRANSFER, *both(f"on_{stage}_batch_start"), step, *both(f"on_{stage}_batch_end")]
    hooks += [*both(f"on_{stage}_epoch_end"), *both(f"on_{stage}_end")]
    return hooks + ([f"on_{stage}_model_train"] if model_train else [])


FIT_START = ["configure_callbacks", "prepare_data", *both("setup"), "configure_model", "configure_optimizers",
             *both("on_fit_start")]
FIT_END = [*both("on_train_end"), *both("on_fit_end"), *both("teardown")]


def test_fit_calls_every_hook_in_lightning_order(tmp_path):
    calls: list[str] = []
    recorder = HookRecorder(calls)
    trainer = Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1,
        callbacks=[recorder], default_root_dir=tmp_path, **QUIET,
    )
    trainer.fit(RecordingModule(calls), loader(), loader())

    assert calls == [
        *FIT_START,
        "Callback.on_sanity_check_start",
        *evaluation("validation", "validation_step", batches=1),
        "Callback.on_sanity_check_end",
        *both("on_train_start"),
        *both("on_train_epoch_start"),
        *train_batch(),
        *train_batch(),
        "on_validation_model_zero_grad",
        *evaluation("validation", "validation_step", batches=1),
        *both("on_train_epoch_end"),
        *FIT_END,
    ]
    assert recorder.stages == ["fit", "fit"]


def test_accumulation_zeroes_on_the_first_batch_of_a_window_and_steps_on_the_last(tmp_path):
    calls: list[str] = []
    trainer = Trainer(
        max_epochs=1, limit_train_batches=3, accumulate_grad_batches=2,
        callbacks=[HookRecorder(calls)], default_root_dir=tmp_path, **QUIET,
    )
    trainer.fit(RecordingModule(calls), loader())

    assert calls == [
        *FIT_START,
        *both("on_train_start"),
        *both("on_train_epoch_start"),
        *train_batch(zero_grad=True, step=False),   # batch 0 opens the first window
        *train_batch(zero_grad=False, step=True),   # batch 1 closes it
        *train_batch(zero_grad=True, step=True),    # batch 2, the epoch's last, is a window of its own
        *both("on_train_epoch_end"),
        *FIT_END,
    ]
    assert trainer.global_step == 2


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_schedulers_step_before_on_train_batch_end(tmp_path, interval):
    """Lightning steps step-interval (and, at the last batch, epoch-interval) schedulers right after the
    optimizer step, before on_train_batch_end, so the batch-end hooks and the validation see the new lr."""

    class WithScheduler(RecordingModule):
        def configure_optimizers(self):
            self._record("configure_optimizers")
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    calls: list[str] = []
    trainer = Trainer(
        max_epochs=1, limit_train_batches=2, callbacks=[HookRecorder(calls)], default_root_dir=tmp_path, **QUIET
    )
    trainer.fit(WithScheduler(calls), loader())

    assert calls == [
        *FIT_START,
        *both("on_train_start"),
        *both("on_train_epoch_start"),
        *train_batch(scheduler=interval == "step"),
        *train_batch(scheduler=True),
        *both("on_train_epoch_end"),
        *FIT_END,
    ]


def test_validate_calls_every_hook_in_lightning_order(tmp_path):
    calls: list[str] = []
    recorder = HookRecorder(calls)
    trainer = Trainer(limit_val_batches=2, callbacks=[recorder], default_root_dir=tmp_path, **QUIET)
    trainer.validate(RecordingModule(calls), loader(), verbose=False)

    assert calls == [
        "configure_callbacks", "prepare_data", *both("setup"), "configure_model",
        *evaluation("validation", "validation_step", batches=2),
        *both("teardown"),
    ]
    assert recorder.stages == ["validate", "validate"]


def test_test_calls_every_hook_in_lightning_order(tmp_path):
    calls: list[str] = []
    recorder = HookRecorder(calls)
    trainer = Trainer(limit_test_batches=2, callbacks=[recorder], default_root_dir=tmp_path, **QUIET)
    trainer.test(RecordingModule(calls), loader(), verbose=False)

    assert calls == [
        "configure_callbacks", "prepare_data", *both("setup"), "configure_model",
        *evaluation("test", "test_step", batches=2),
        *both("teardown"),
    ]
    assert recorder.stages == ["test", "test"]


def test_predict_calls_every_hook_in_lightning_order(tmp_path):
    calls: list[str] = []
    recorder = HookRecorder(calls)
    trainer = Trainer(limit_predict_batches=2, callbacks=[recorder], default_root_dir=tmp_path, **QUIET)
    predictions = trainer.predict(RecordingModule(calls), loader())

    per_batch = [*TRANSFER, *both("on_predict_batch_start"), "predict_step", *both("on_predict_batch_end")]
    assert calls == [
        "configure_callbacks", "prepare_data", *both("setup"), "configure_model",
        "on_predict_model_eval",
        *both("on_predict_start"),
        *both("on_predict_epoch_start"),
        *per_batch,
        *per_batch,
        *both("on_predict_epoch_end"),
        *both("on_predict_end"),
        *both("teardown"),
    ]
    assert recorder.stages == ["predict", "predict"]
    assert len(predictions) == 2


# -------------------------------------------------------------------------------------------------
# on_train_epoch_end: ordinary callbacks → module → monitoring callbacks
# -------------------------------------------------------------------------------------------------
class EpochEndRecorder(Callback):
    def __init__(self, calls: list[str], label: str) -> None:
        self.calls, self.label = calls, label

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.calls.append(f"{self.label}.on_train_batch_end")

    def on_train_epoch_end(self, trainer, pl_module):
        self.calls.append(f"{self.label}.on_train_epoch_end")


class MonitorRecorder(EpochEndRecorder):
    is_monitor = True


class CheckpointRecorder(ModelCheckpoint):
    """A ModelCheckpoint as users subclass it: it does not say is_monitor, it *is* a checkpoint callback."""

    def __init__(self, calls: list[str], dirpath: Any) -> None:
        super().__init__(dirpath=dirpath)
        self.calls = calls

    def on_train_epoch_end(self, trainer, pl_module):
        self.calls.append("ModelCheckpoint.on_train_epoch_end")
        super().on_train_epoch_end(trainer, pl_module)


class EpochEndModule(LightningModule):
    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.calls.append("module.on_train_batch_end")

    def on_train_epoch_end(self):
        self.calls.append("module.on_train_epoch_end")


def epoch_end_calls(calls: list[str]) -> list[str]:
    return [call for call in calls if call.endswith("on_train_epoch_end")]


def test_module_on_train_epoch_end_runs_between_ordinary_and_monitoring_callbacks(tmp_path):
    calls: list[str] = []
    callbacks = [MonitorRecorder(calls, "monitor"), EpochEndRecorder(calls, "ordinary")]  # monitor listed first
    trainer = Trainer(max_epochs=1, limit_train_batches=1, callbacks=callbacks, default_root_dir=tmp_path, **QUIET)
    trainer.fit(EpochEndModule(calls), loader())

    assert epoch_end_calls(calls) == [
        "ordinary.on_train_epoch_end", "module.on_train_epoch_end", "monitor.on_train_epoch_end"
    ]


def test_model_checkpoint_runs_after_the_module_at_train_epoch_end(tmp_path):
    """ModelCheckpoint is a monitoring callback in Lightning: what the module logs in on_train_epoch_end
    must be there when the checkpoint is chosen and written."""
    calls: list[str] = []
    callbacks = [CheckpointRecorder(calls, tmp_path / "checkpoints"), EpochEndRecorder(calls, "ordinary")]
    trainer = Trainer(
        max_epochs=1, limit_train_batches=1, callbacks=callbacks, default_root_dir=tmp_path,
        enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=True,
    )
    trainer.fit(EpochEndModule(calls), loader())

    assert epoch_end_calls(calls) == [
        "ordinary.on_train_epoch_end", "module.on_train_epoch_end", "ModelCheckpoint.on_train_epoch_end"
    ]
    assert list((tmp_path / "checkpoints").glob("*.ckpt"))


def test_monitoring_callbacks_keep_their_list_order_for_every_other_hook(tmp_path):
    """Only on_train_epoch_end moves monitors after the module; elsewhere user callbacks run in list order."""
    calls: list[str] = []
    callbacks = [MonitorRecorder(calls, "monitor"), EpochEndRecorder(calls, "ordinary")]
    trainer = Trainer(max_epochs=1, limit_train_batches=1, callbacks=callbacks, default_root_dir=tmp_path, **QUIET)
    trainer.fit(EpochEndModule(calls), loader())

    assert [call for call in calls if call.endswith("on_train_batch_end")] == [
        "monitor.on_train_batch_end", "ordinary.on_train_batch_end", "module.on_train_batch_end"
    ]


# -------------------------------------------------------------------------------------------------
# on_train_batch_start returning -1
# -------------------------------------------------------------------------------------------------
class SkipRestOfEpoch(LightningModule):
    """Returns -1 from on_train_batch_start at batch 1: only batch 0 of each epoch trains."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.trained: list[tuple[int, int]] = []
        self.batch_ends: list[tuple[int, int]] = []
        self.epoch_ends = 0

    def training_step(self, batch, batch_idx):
        self.trained.append((self.current_epoch, batch_idx))
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_batch_start(self, batch, batch_idx):
        return -1 if batch_idx == 1 else None

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.batch_ends.append((self.current_epoch, batch_idx))

    def on_train_epoch_end(self):
        self.epoch_ends += 1


def test_on_train_batch_start_returning_minus_one_ends_the_epoch(tmp_path):
    model = SkipRestOfEpoch()
    trainer = Trainer(max_epochs=2, limit_train_batches=3, default_root_dir=tmp_path, **QUIET)
    trainer.fit(model, loader())

    assert model.trained == [(0, 0), (1, 0)]          # the rest of each epoch is skipped, the next epoch runs
    assert model.batch_ends == [(0, 0), (1, 0)]       # the skipped batch has no on_train_batch_end
    assert model.epoch_ends == 2
    assert trainer.global_step == 2
    assert trainer.current_epoch == 2


def test_a_callback_returning_minus_one_does_not_end_the_epoch(tmp_path):
    """Only the module's return value counts (as in Lightning); callbacks steer through trainer state."""

    class ReturnsMinusOne(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            return -1

    class Counting(EpochEndModule):
        def training_step(self, batch, batch_idx):
            self.calls.append(f"training_step {batch_idx}")
            return super().training_step(batch, batch_idx)

    calls: list[str] = []
    trainer = Trainer(
        max_epochs=1, limit_train_batches=3, callbacks=[ReturnsMinusOne()], default_root_dir=tmp_path, **QUIET
    )
    trainer.fit(Counting(calls), loader())

    assert [call for call in calls if call.startswith("training_step")] == [
        "training_step 0", "training_step 1", "training_step 2"
    ]
    assert trainer.global_step == 3
