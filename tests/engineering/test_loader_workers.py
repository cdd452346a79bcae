"""A fit that ends, however it ends, leaves no DataLoader worker process behind: not for the garbage collector to
find later (which waits seconds for each), and not while the Trainer lives on."""

from __future__ import annotations

import gc
import multiprocessing

import pytest
import torch
from torch.utils.data import DataLoader

from engineering import Trainer
from research import LightningModule
from tests.helpers import QUIET


class Failed(Exception):
    pass


class FailsAtTheFourthBatch(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        if batch_idx == 3 and self.current_epoch == 1:
            raise Failed
        values = batch["a"] if isinstance(batch, dict) else batch
        return self.layer(values.float().view(-1, 1)).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def workers(persistent: bool = False) -> DataLoader:
    return DataLoader(torch.arange(40), batch_size=2, num_workers=1, persistent_workers=persistent)


@pytest.fixture
def no_automatic_collection():
    """Only reference counting frees objects here: a collection by chance would hide a reference cycle."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("several", [False, True], ids=["one loader", "a dict of loaders"])
def test_a_fit_that_raises_stops_its_loader_workers(several, no_automatic_collection):
    loaders = {"a": workers(), "b": workers()} if several else workers()
    trainer = Trainer(max_epochs=2, **QUIET)
    with pytest.raises(Failed):
        trainer.fit(FailsAtTheFourthBatch(), loaders)
    assert multiprocessing.active_children() == []


def test_persistent_workers_start_again_for_the_next_fit(no_automatic_collection):
    loaders = {"a": workers(persistent=True), "b": workers(persistent=True)}
    trainer = Trainer(max_epochs=2, **QUIET)
    with pytest.raises(Failed):
        trainer.fit(FailsAtTheFourthBatch(), loaders)
    assert multiprocessing.active_children() == []
    trainer = Trainer(max_epochs=1, **QUIET)
    trainer.fit(FailsAtTheFourthBatch(), loaders)  # epoch 0 only: no failure; the loaders' workers start anew
    assert trainer.global_step == 20
