"""ModelSummary: the table printed at fit start, its totals checked against the parameters themselves."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from auxiliary import ModelSummary
from engineering import Trainer
from research import LightningModule
from tests.helpers import tiny_loader


class Net(LightningModule):
    """Two blocks, a frozen embedding-like layer, a layer in eval mode, and an example input."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(32, 300), nn.ReLU(), nn.Linear(300, 40))
        self.frozen = nn.Linear(40, 40)
        self.frozen.requires_grad_(False)
        self.norm = nn.BatchNorm1d(40).eval()
        self.head = nn.Linear(40, 2)
        self.example_input_array = torch.zeros(5, 32)

    def forward(self, x):
        return self.head(self.norm(self.frozen(self.encoder(x))))

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def printed_total(table: str, label: str) -> int:
    match = re.search(rf"^([\d,]+)\s+{re.escape(label)}$", table, flags=re.MULTILINE)
    assert match, f"no {label!r} line in:\n{table}"
    return int(match.group(1).replace(",", ""))


def test_the_table_printed_at_fit_start_adds_up_to_the_parameters(tmp_path, capsys):
    model = Net()
    Trainer(max_epochs=1, limit_train_batches=1, default_root_dir=tmp_path, logger=False,
            enable_progress_bar=False, enable_checkpointing=False).fit(model, tiny_loader())
    table = capsys.readouterr().out
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert printed_total(table, "Trainable params") == trainable
    assert printed_total(table, "Non-trainable params") == frozen
    assert printed_total(table, "Total params") == sum(p.numel() for p in model.parameters())
    size_mb = float(re.search(r"^([\d.,]+)\s+Total estimated model params size \(MB\)$", table, re.M).group(1))
    assert size_mb == pytest.approx(sum(p.numel() for p in model.parameters()) * 4 / 1e6, abs=1e-3)


def test_rows_show_each_layer_with_type_parameters_mode_and_sizes():
    summary = ModelSummary().summarize(Net())
    rows = {layer.name: layer for layer in summary.layers}
    assert list(rows) == ["encoder", "frozen", "norm", "head"]  # max_depth=1: top-level layers only
    assert (rows["encoder"].type, rows["encoder"].parameters) == ("Sequential", 32 * 300 + 300 + 300 * 40 + 40)
    assert rows["norm"].mode == "eval" and rows["head"].mode == "train"
    assert (rows["encoder"].in_sizes, rows["encoder"].out_sizes) == ("[5, 32]", "[5, 40]")
    assert (rows["head"].in_sizes, rows["head"].out_sizes) == ("[5, 40]", "[5, 2]")
    table = str(summary)
    header = [cell.strip() for cell in table.splitlines()[0].split(" | ")]
    assert header == ["", "Name", "Type", "Params", "Mode", "FLOPs", "In sizes", "Out sizes"]
    assert "21.9 K" in table  # a layer's count is abbreviated; the totals are exact


def test_modules_in_train_and_eval_mode_count_the_layers_not_the_module_itself():
    # Lightning 2.6.6 prints the same two lines for this Net: 6 in train mode, 1 in eval mode.
    table = str(ModelSummary().summarize(Net()))
    assert printed_total(table, "Modules in train mode") == 6  # encoder, its 3 layers, frozen, head
    assert printed_total(table, "Modules in eval mode") == 1  # norm


def test_an_example_input_adds_flops_per_layer_and_their_total():
    summary = ModelSummary(max_depth=-1).summarize(Net())
    flops = {layer.name: layer.flops for layer in summary.layers}
    # A Linear(n, m) on 5 rows does 5·n·m multiply-adds, 2 FLOPs each; ReLU and BatchNorm count none.
    assert flops == {"encoder": 2 * 5 * (32 * 300 + 300 * 40), "encoder.0": 2 * 5 * 32 * 300, "encoder.1": 0,
                     "encoder.2": 2 * 5 * 300 * 40, "frozen": 2 * 5 * 40 * 40, "norm": 0, "head": 2 * 5 * 40 * 2}
    assert summary.total_flops == flops["encoder"] + flops["frozen"] + flops["head"] == 232_800
    table = str(summary)
    assert re.search(r"^1 +\| encoder\.0 +\| Linear +\| 9\.9 K +\| train \| 96\.0 K +\| \[5, 32\] +\| \[5, 300\]$",
                     table, re.M), table
    assert re.search(r"^232 K +Total Flops$", table, re.M), table


def test_without_an_example_input_there_are_no_flops_or_sizes():
    model = Net()
    model.example_input_array = None
    table = str(ModelSummary().summarize(model))
    header = [cell.strip() for cell in table.splitlines()[0].split(" | ")]
    assert header == ["", "Name", "Type", "Params", "Mode"]
    assert "Total Flops" not in table


class WithOwnParameter(Net):
    def __init__(self) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(3))


def test_parameters_outside_every_listed_layer_get_an_other_params_row():
    table = str(ModelSummary().summarize(WithOwnParameter()))
    assert re.search(r"^ +\| other params \| n/a +\| 3 +\| n/a +\| n/a +\| n/a +\| n/a$", table, re.M), table
    assert "other params" not in str(ModelSummary().summarize(Net()))


def test_counts_are_abbreviated_as_lightning_does():
    summary = ModelSummary().summarize(Net())
    rows = {layer.name: line for layer, line in zip(summary.layers, str(summary).splitlines()[2:])}
    assert "| 216 K " in rows["encoder"] and "| 16.0 K " in rows["frozen"] and "| 800 " in rows["head"]


def test_max_depth_goes_deeper_or_turns_the_summary_off(tmp_path, capsys):
    names = [layer.name for layer in ModelSummary(max_depth=-1).summarize(Net()).layers]
    assert names == ["encoder", "encoder.0", "encoder.1", "encoder.2", "frozen", "norm", "head"]
    Trainer(max_epochs=1, limit_train_batches=1, callbacks=[ModelSummary(max_depth=0)], default_root_dir=tmp_path,
            logger=False, enable_progress_bar=False, enable_checkpointing=False).fit(Net(), tiny_loader())
    assert "Total params" not in capsys.readouterr().out


def test_the_forward_pass_for_sizes_leaves_the_module_in_its_mode():
    model = Net()
    ModelSummary().summarize(model)
    assert model.training and not model.norm.training


def test_enable_model_summary_false_removes_it(tmp_path):
    assert not any(isinstance(c, ModelSummary) for c in Trainer(enable_model_summary=False).callbacks)


def test_a_bad_max_depth_names_the_choices():
    with pytest.raises(ValueError, match="max_depth=-2 must be -1"):
        ModelSummary(max_depth=-2)
