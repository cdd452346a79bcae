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
    assert header == ["", "Name", "Type", "Params", "Mode", "In sizes", "Out sizes"]
    assert "21.9 K" in table  # a layer's count is abbreviated; the totals are exact


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
