"""trainer.train_dataloader / val_dataloaders / test_dataloaders / predict_dataloaders return what the user gave, as
Lightning 2.6.6 does: one DataLoader, or the list, tuple or dict of them (recorded from Lightning)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engineering import Trainer
from research import LightningModule
from tests.helpers import QUIET


class Module(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(torch.ones(1, 2)).sum()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        pass

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        pass

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)


def shape(given) -> str:
    if isinstance(given, DataLoader):
        return "DataLoader"
    if isinstance(given, (list, tuple, dict)):
        items = given.values() if isinstance(given, dict) else given
        return f"{type(given).__name__}[{','.join(shape(item) for item in items)}]"
    return repr(given)


def trainer(tmp_path) -> Trainer:
    return Trainer(**QUIET, default_root_dir=tmp_path, max_epochs=1, num_sanity_val_steps=0)


@pytest.mark.parametrize("given, expected", [
    (loader(), "DataLoader"),
    ([loader(), loader()], "list[DataLoader,DataLoader]"),
    ([loader()], "list[DataLoader]"),
    ((loader(), loader()), "tuple[DataLoader,DataLoader]"),
])
def test_each_loader_attribute_returns_the_form_given(tmp_path, given, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = trainer(tmp_path)
        fitted.fit(Module(), train_dataloaders=given, val_dataloaders=given)
        validated, tested, predicted = trainer(tmp_path), trainer(tmp_path), trainer(tmp_path)
        validated.validate(Module(), given, verbose=False)
        tested.test(Module(), given, verbose=False)
        predicted.predict(Module(), given)
    assert [shape(fitted.train_dataloader), shape(fitted.val_dataloaders), shape(validated.val_dataloaders),
            shape(tested.test_dataloaders), shape(predicted.predict_dataloaders)] == [expected] * 5


def test_before_any_run_there_are_none(tmp_path):
    fresh = trainer(tmp_path)
    assert [fresh.train_dataloader, fresh.val_dataloaders, fresh.test_dataloaders,
            fresh.predict_dataloaders] == [None] * 4
