"""LambdaCallback: each function hears its hook with the hook's arguments; hooks given none are not subscribed."""

from __future__ import annotations

import pytest

from auxiliary import LambdaCallback
from engineering import Trainer, events
from tests.helpers import QUIET, TinyModule, tiny_loader


def test_each_function_hears_its_hook_with_lightnings_arguments(tmp_path):
    heard = []
    callback = LambdaCallback(
        on_train_epoch_end=lambda trainer, pl_module: heard.append(("epoch_end", trainer.current_epoch)),
        on_train_batch_end=lambda trainer, pl_module, outputs, batch, batch_idx: heard.append(("batch", batch_idx)),
        setup=lambda trainer, pl_module, stage: heard.append(("setup", stage)),
    )
    Trainer(max_epochs=2, limit_train_batches=2, callbacks=[callback], default_root_dir=tmp_path, **QUIET).fit(
        TinyModule(), tiny_loader())
    assert heard == [("setup", "fit"), ("batch", 0), ("batch", 1), ("epoch_end", 0),
                     ("batch", 0), ("batch", 1), ("epoch_end", 1)]


def test_only_the_given_hooks_are_subscribed(tmp_path):
    subscribed = {}

    def count(trainer, pl_module):
        subscribed.update({name: len(list(event.receivers_for(trainer))) for name, event in events.bus.items()})

    trainer = Trainer(max_epochs=1, limit_train_batches=1, callbacks=[LambdaCallback(on_train_start=count)],
                      default_root_dir=tmp_path, **QUIET)
    trainer.fit(TinyModule(), tiny_loader())
    assert subscribed["on_train_start"] >= 1 and subscribed["on_train_batch_end"] == 0


def test_a_function_with_the_wrong_signature_fails_when_the_run_starts(tmp_path):
    trainer = Trainer(max_epochs=1, callbacks=[LambdaCallback(on_train_batch_end=lambda trainer: None)], **QUIET)
    with pytest.raises(TypeError, match="cannot receive on_train_batch_end"):
        trainer.fit(TinyModule(), tiny_loader())


def test_an_unknown_hook_name_is_refused():
    with pytest.raises(TypeError, match="on_epoch_end"):
        LambdaCallback(on_epoch_end=print)
