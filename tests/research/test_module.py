"""LightningModule helpers a user calls: all_gather and print."""

from __future__ import annotations

import dataclasses

import torch

from engineering import Trainer
from research import LightningModule
from tests.helpers import QUIET, TinyModule, tiny_loader


class Gathers(TinyModule):
    def on_train_end(self):
        self.gathered = self.all_gather({"step": self.global_step, "pair": (torch.ones(2), 1.5), "name": "run"})
        self.print("rank zero says", self.global_step)


def test_with_one_process_all_gather_returns_tensors_unchanged_and_print_prints(tmp_path, capsys):
    module = Gathers()
    Trainer(max_epochs=1, limit_train_batches=2, default_root_dir=tmp_path, **QUIET).fit(module, tiny_loader())
    gathered = module.gathered
    assert torch.equal(gathered["step"], torch.tensor(2)) and torch.equal(gathered["pair"][0], torch.ones(2))
    assert isinstance(gathered["pair"], tuple) and torch.equal(gathered["pair"][1], torch.tensor(1.5))
    assert gathered["name"] == "run"
    assert "rank zero says 2" in capsys.readouterr().out


def test_tbptt_split_batch_splits_a_dataclass_batch_along_time():
    @dataclasses.dataclass
    class Sequences:
        inputs: torch.Tensor
        targets: torch.Tensor

    batch = Sequences(torch.arange(12.0).reshape(2, 6), torch.arange(12.0).reshape(2, 6) * 10)
    splits = LightningModule().tbptt_split_batch(batch, 2)
    assert len(splits) == 3
    assert all(isinstance(split, Sequences) for split in splits)
    assert torch.equal(splits[1].inputs, batch.inputs[:, 2:4])
    assert torch.equal(splits[2].targets, batch.targets[:, 4:6])


def test_freeze_stops_every_parameter_and_unfreeze_restores_them():
    module = TinyModule()
    module.freeze()
    assert not module.training and not any(parameter.requires_grad for parameter in module.parameters())
    module.unfreeze()
    assert module.training and all(parameter.requires_grad for parameter in module.parameters())
