"""Validation, test and predict given a collection of loaders or a CombinedLoader read them one after the other,
as Lightning's sequential mode does: each loader gets its dataloader_idx in the collection's order."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from engineering import Trainer
from engineering.utilities import CombinedLoader
from research import LightningModule
from tests.helpers import QUIET


class Reads(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.calls: list[tuple[int, int, list[float]]] = []

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.calls.append((dataloader_idx, batch_idx, batch.tolist()))
        self.log("value", batch.sum())

    test_step = validation_step

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return batch * 10


def collection():
    return {"small": DataLoader(torch.arange(3.0), batch_size=2), "large": [DataLoader(torch.arange(10.0, 14.0), batch_size=3)]}


@pytest.mark.parametrize("given", [collection, lambda: CombinedLoader(collection(), "sequential")],
                         ids=["nested-dict", "sequential-combined-loader"])
def test_validate_reads_each_loader_with_its_dataloader_idx(tmp_path, given):
    model = Reads()
    results = Trainer(default_root_dir=tmp_path, **QUIET).validate(model, given())
    assert model.calls == [(0, 0, [0.0, 1.0]), (0, 1, [2.0]), (1, 0, [10.0, 11.0, 12.0]), (1, 1, [13.0])]
    # Each value's epoch mean is weighted by batch size, as in Lightning: (1 * 2 + 2 * 1) / 3 and (33 * 3 + 13) / 4.
    assert results == [{"value/dataloader_idx_0": pytest.approx(4 / 3)}, {"value/dataloader_idx_1": 28.0}]


def test_val_dataloaders_is_the_collection_as_given_and_read_in_dataloader_idx_order(tmp_path):
    loaders = collection()
    model = Reads()
    trainer = Trainer(default_root_dir=tmp_path, **QUIET)
    trainer.validate(model, loaders)
    assert trainer.val_dataloaders is loaders  # as Lightning returns it
    assert sorted({call[0] for call in model.calls}) == [0, 1]


def test_test_and_predict_read_a_sequential_combined_loader(tmp_path):
    model = Reads()
    trainer = Trainer(default_root_dir=tmp_path, limit_test_batches=1, **QUIET)
    trainer.test(model, CombinedLoader(collection(), "sequential"))
    assert [call[:2] for call in model.calls] == [(0, 0), (1, 0)]
    predictions = trainer.predict(model, CombinedLoader(collection(), "sequential"))
    assert [[batch.tolist() for batch in per_loader] for per_loader in predictions] == [
        [[0.0, 10.0], [20.0]], [[100.0, 110.0, 120.0], [130.0]]
    ]


@pytest.mark.parametrize("entry_point", ["validate", "test"])
def test_a_combined_loader_in_another_mode_is_one_loader_of_combined_batches(tmp_path, entry_point):
    seen = []

    class ReadsDicts(Reads):
        def validation_step(self, batch, batch_idx, dataloader_idx=None):
            seen.append((batch_idx, dataloader_idx, batch["small"].tolist(), batch["large"][0].tolist()))

        test_step = validation_step

    getattr(Trainer(default_root_dir=tmp_path, **QUIET), entry_point)(
        ReadsDicts(), CombinedLoader(collection(), "max_size_cycle"))
    assert seen == [(0, None, [0.0, 1.0], [10.0, 11.0, 12.0]), (1, None, [2.0], [13.0])]


def test_predict_refuses_a_combined_loader_that_is_not_sequential(tmp_path):
    with pytest.raises(ValueError, match=r'`trainer.predict\(\)` only supports the `CombinedLoader\(mode="sequential"\)` mode'):
        Trainer(default_root_dir=tmp_path, **QUIET).predict(Reads(), CombinedLoader(collection(), "max_size_cycle"))
