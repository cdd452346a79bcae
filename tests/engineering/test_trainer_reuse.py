"""A Trainer used for a second fit: it trains on where Lightning does, and says so where nothing would train."""

from __future__ import annotations

import warnings

import pytest
import torch

from engineering import Callback, Trainer
from helpers import QUIET, TinyModule, tiny_loader


class StopAfterFirstEpoch(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            trainer.should_stop = True


def test_a_second_fit_with_nothing_left_to_train_warns_naming_the_fix(tmp_path, capsys):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    model = TinyModule()
    trainer.fit(model, tiny_loader())
    weights = model.layer.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"Trainer.fit trained nothing: this run is already at epoch 1, global_step 4, "
                                         r"so `max_epochs=1` is reached.*raise the limit.*use a new Trainer"):
        trainer.fit(model, tiny_loader())
    assert torch.equal(model.layer.weight, weights)
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in capsys.readouterr().out  # Lightning's line, too


def test_a_second_fit_with_a_higher_max_epochs_trains_on_silently(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    model = TinyModule()
    trainer.fit(model, tiny_loader(), tiny_loader())
    trainer.max_epochs = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(model, tiny_loader(), tiny_loader())
    assert (trainer.current_epoch, trainer.global_step) == (2, 8)


def test_another_model_on_a_used_trainer_is_told_it_continues_from_the_trainers_progress(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(TinyModule(), tiny_loader())
    trainer.max_epochs = 2
    other = TinyModule()
    weights = other.layer.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"already fitted TinyModule up to epoch 1, global_step 4; fitting a "
                                         r"different model \(TinyModule\) on it continues from there.*new Trainer"):
        trainer.fit(other, tiny_loader())
    assert not torch.equal(other.layer.weight, weights)  # it trained the one epoch that was left, as Lightning
    assert (trainer.current_epoch, trainer.global_step) == (2, 8)


def test_another_model_on_a_finished_trainer_is_not_trained_and_both_warnings_say_so(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(TinyModule(), tiny_loader())
    with pytest.warns(UserWarning) as caught:
        trainer.fit(TinyModule(), tiny_loader())
    messages = [str(warning.message) for warning in caught]
    assert any("continues from there" in message for message in messages)
    assert any("Trainer.fit trained nothing" in message for message in messages)


def test_a_stop_request_of_the_first_fit_does_not_end_the_second(tmp_path):
    # Lightning resets should_stop when fit starts: the second fit trains the remaining epochs (12 steps, epoch 3).
    trainer = Trainer(max_epochs=3, callbacks=[StopAfterFirstEpoch()], default_root_dir=tmp_path, **QUIET)
    model = TinyModule()
    trainer.fit(model, tiny_loader())
    assert (trainer.current_epoch, trainer.global_step) == (1, 4)
    trainer.fit(model, tiny_loader())
    assert (trainer.current_epoch, trainer.global_step) == (3, 12)
