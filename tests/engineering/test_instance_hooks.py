"""Hooks set on an instance, and mocks of Callback, are called as Lightning 2.6.6 calls them (tables recorded
from Lightning with the same program)."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback, Trainer
from research import LightningModule
from tests.helpers import QUIET


class Module(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        pass

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(2, 2)), batch_size=2)


def trainer(tmp_path, callback) -> Trainer:
    return Trainer(**QUIET, default_root_dir=tmp_path, max_epochs=1, num_sanity_val_steps=0, callbacks=[callback])


def described(calls, model) -> list[tuple[str, list[str], list[str]]]:
    """Each recorded call as (hook, what each positional argument is, keyword names)."""
    def what(argument):
        return "T" if argument is model.trainer else "M" if argument is model else type(argument).__name__

    return [(name, [what(a) for a in args], sorted(kwargs)) for name, args, kwargs in calls if "state_key" not in name]


def hook(name, *arguments, keywords=()):
    return (name, ["T", "M", *arguments], list(keywords))


FIT_CALLS = [
    hook("setup", keywords=["stage"]), hook("on_fit_start"), hook("on_train_start"), hook("on_train_epoch_start"),
    hook("on_train_batch_start", "list", "int"), hook("on_before_zero_grad", "SGD"),
    hook("on_before_backward", "Tensor"), hook("on_after_backward"), hook("on_before_optimizer_step", "SGD"),
    hook("on_train_batch_end", "dict", "list", "int"), hook("on_validation_start"), hook("on_validation_epoch_start"),
    hook("on_validation_batch_start", "list", "int"), hook("on_validation_batch_end", "NoneType", "list", "int"),
    hook("on_validation_epoch_end"), hook("on_validation_end"), hook("on_train_epoch_end"), hook("on_train_end"),
    hook("on_fit_end"), hook("teardown", keywords=["stage"]),
]
PREDICT_TWO_LOADERS_CALLS = [
    hook("setup", keywords=["stage"]), hook("on_predict_start"), hook("on_predict_epoch_start"),
    hook("on_predict_batch_start", "list", "int", "int"), hook("on_predict_batch_end", "int", "list", "int", "int"),
    hook("on_predict_batch_start", "list", "int", "int"), hook("on_predict_batch_end", "int", "list", "int", "int"),
    hook("on_predict_epoch_end"), hook("on_predict_end"), hook("teardown", keywords=["stage"]),
]


@pytest.mark.parametrize("kind", [mock.Mock, mock.MagicMock])
def test_a_mock_callback_records_every_hook_with_lightnings_arguments(tmp_path, kind):
    callback, model = kind(spec=Callback), Module()
    trainer(tmp_path, callback).fit(model, loader(), loader())
    assert described(callback.mock_calls, model) == FIT_CALLS

    callback, model = kind(spec=Callback), Module()
    trainer(tmp_path, callback).predict(model, [loader(), loader()])
    assert described(callback.mock_calls, model) == PREDICT_TWO_LOADERS_CALLS


def test_hooks_set_on_instances_are_called_positionally(tmp_path):
    calls = []

    def recorder(name):
        return lambda *arguments, **keywords: calls.append((name, len(arguments), sorted(keywords)))

    callback, model = Callback(), Module()
    callback.on_train_start = recorder("callback.on_train_start")
    callback.on_validation_batch_end = recorder("callback.on_validation_batch_end")
    model.on_train_epoch_end = recorder("model.on_train_epoch_end")
    model.on_validation_batch_end = recorder("model.on_validation_batch_end")
    trainer(tmp_path, callback).fit(model, loader(), loader())
    assert calls == [  # as Lightning 2.6.6: with one dataloader, no dataloader_idx
        ("callback.on_train_start", 2, []), ("callback.on_validation_batch_end", 5, []),
        ("model.on_validation_batch_end", 3, []), ("model.on_train_epoch_end", 0, []),
    ]
