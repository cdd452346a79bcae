"""Ctrl-C and SIGTERM sent to this very process while fit runs (the process-level tests are in tests/faults/)."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from engineering import Callback, OnExceptionCheckpoint, Preempted, Trainer
from engineering.checkpointing.checkpoint import load_checkpoint
from tests.helpers import QUIET, TinyModule, tiny_loader


class Records(Callback):
    """Sends ``signum`` to this process at the start of the batch after ``global_step`` reached ``step`` (or of
    validation batch ``val_batch``), and records the exceptions and teardowns it hears."""

    def __init__(self, signum: int, step: int = -1, val_batch: int = -1) -> None:
        self.signum, self.step, self.val_batch = signum, step, val_batch
        self.heard: list[str] = []
        self.val_batches = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
            self.step = -1

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking and batch_idx == self.val_batch:
            os.kill(os.getpid(), self.signum)
            self.val_batch = -1

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.val_batches += not trainer.sanity_checking

    def on_exception(self, trainer, pl_module, exception):
        self.heard.append(f"on_exception {type(exception).__name__}")

    def teardown(self, trainer, pl_module, stage):
        self.heard.append("teardown")


def test_ctrl_c_finishes_the_step_then_shuts_down_as_lightning_does(tmp_path, capsys):
    before = signal.getsignal(signal.SIGINT)
    records = Records(signal.SIGINT, step=2)
    saver = OnExceptionCheckpoint(tmp_path)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[records, saver], **QUIET)
    with pytest.raises(SystemExit) as exited:
        trainer.fit(TinyModule(), tiny_loader())
    assert exited.value.code == 1
    assert capsys.readouterr().out.count("Detected KeyboardInterrupt, attempting graceful shutdown ...") == 1
    assert records.heard == ["on_exception KeyboardInterrupt", "teardown"]
    assert trainer.global_step == 3 and trainer.interrupted  # the step in progress ran to its end
    assert load_checkpoint(saver.ckpt_path)["global_step"] == 3
    assert signal.getsignal(signal.SIGINT) is before and not trainer.received_sigterm


def test_a_keyboard_interrupt_raised_in_validate_ends_the_same_way(tmp_path, capsys):
    class Interrupts(TinyModule):
        def validation_step(self, batch, batch_idx):
            raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        Trainer(default_root_dir=tmp_path, **QUIET).validate(Interrupts(), tiny_loader())
    assert exited.value.code == 1 and "Detected KeyboardInterrupt" in capsys.readouterr().out


def test_sigterm_during_validation_in_fit_is_answered_at_the_next_validation_batch(tmp_path):
    records = Records(signal.SIGTERM, val_batch=1)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[records], **QUIET)
    model = TinyModule()
    with pytest.raises(Preempted):
        trainer.fit(model, tiny_loader(), tiny_loader(samples=160, batch_size=16))
    assert records.val_batches == 2  # of 10: the batch in progress finished, no other started
    assert records.heard == ["on_exception Preempted", "teardown"]
    saved = load_checkpoint(tmp_path / "hpc_ckpt_1.ckpt")
    assert saved["global_step"] == 4 and (saved["progress"]["epoch"], saved["progress"]["batch_idx"]) == (1, 0)
    assert model.training  # back in training mode, as validation left it


def test_a_later_validate_does_not_stop_for_a_signal_an_earlier_fit_received(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[Records(signal.SIGTERM, step=1)], **QUIET)
    model = TinyModule()
    with pytest.raises(Preempted):
        trainer.fit(model, tiny_loader())
    assert trainer.received_sigterm
    (metrics,) = trainer.validate(model, tiny_loader(samples=160, batch_size=16), verbose=False)
    assert torch.isfinite(torch.tensor(metrics["val_loss"]))
