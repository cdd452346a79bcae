"""trainer.max_epochs / min_epochs / max_steps / min_steps read what Lightning 2.6.6's read: the flags as given until
fit starts, then the limits fit runs with (values recorded from Lightning with the same flags)."""

from __future__ import annotations

import warnings

import pytest

from engineering import Callback, Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


class StopAfterFirstBatch(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        trainer.should_stop = True


# flags → ((max_epochs, min_epochs, max_steps, min_steps) at construction, the same after fit, (global_step, epoch))
LIGHTNING_2_6_6 = [
    ({}, (None, None, -1, None), (1000, 0, -1, None), (1, 1)),
    ({"max_steps": 5}, (None, None, 5, None), (-1, 0, 5, None), (1, 1)),
    ({"max_epochs": -1}, (-1, None, -1, None), (-1, 0, -1, None), (1, 1)),
    ({"max_time": "00:00:01:00"}, (None, None, -1, None), (-1, 0, -1, None), (1, 1)),
    ({"max_epochs": 3}, (3, None, -1, None), (3, 0, -1, None), (1, 1)),
    ({"min_epochs": 2}, (None, 2, -1, None), (1000, 2, -1, None), (4, 2)),
    ({"fast_dev_run": True}, (1, None, 1, None), (1, 0, 1, None), (1, 1)),
    ({"max_steps": 5, "max_epochs": 2}, (2, None, 5, None), (2, 0, 5, None), (1, 1)),
]


@pytest.mark.parametrize("flags, at_construction, after_fit, progress", LIGHTNING_2_6_6)
def test_loop_limits_read_as_in_lightning(tmp_path, flags, at_construction, after_fit, progress):
    trainer = Trainer(**QUIET, default_root_dir=tmp_path, callbacks=[StopAfterFirstBatch()], **flags)
    assert (trainer.max_epochs, trainer.min_epochs, trainer.max_steps, trainer.min_steps) == at_construction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(TinyModule(), tiny_loader(samples=32))  # two batches an epoch, as recorded
    assert (trainer.max_epochs, trainer.min_epochs, trainer.max_steps, trainer.min_steps) == after_fit
    assert (trainer.global_step, trainer.current_epoch) == progress


def test_min_steps_alone_lets_a_stop_request_end_the_first_epoch_early(tmp_path):
    # Lightning 2.6.6 sets min_epochs=1 here, so the same request stops only after the epoch's 4 batches.
    trainer = Trainer(**QUIET, default_root_dir=tmp_path, min_steps=1, callbacks=[StopAfterFirstBatch()])
    trainer.fit(TinyModule(), tiny_loader())
    assert (trainer.min_epochs, trainer.global_step) == (None, 1)
