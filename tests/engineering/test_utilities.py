"""``engineering.utilities`` (Lightning's ``lightning.pytorch.utilities``), ``cli_lightning_logo`` and the strategy
base classes: the names Lightning programs import, each doing what it does under Lightning."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import engineering
from engineering import DDPStrategy, ParallelStrategy, SingleDeviceStrategy, Strategy, Trainer
from engineering.utilities import (
    AttributeDict, grad_norm, is_picklable, measure_flops, move_data_to_device, rank_zero_debug, rank_zero_info,
    rank_zero_only, rank_zero_warn,
)
from research import AttributeDict as ResearchAttributeDict
from tests.helpers import QUIET, TinyModule, tiny_loader

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rank(monkeypatch):
    """Set this process's launcher rank."""
    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(variable, raising=False)
    return lambda value: monkeypatch.setenv("RANK", str(value))


def test_rank_zero_only_runs_on_rank_zero_and_gives_the_default_elsewhere(rank, monkeypatch):
    calls = []
    record = rank_zero_only(lambda value: calls.append(value) or "ran", default="skipped")
    assert record(1) == "ran"
    rank(1)
    assert record(2) == "skipped"
    monkeypatch.setattr(rank_zero_only, "rank", 0)  # a program may set the rank itself, as in Lightning
    assert record(3) == "ran"
    assert calls == [1, 3]


def test_rank_zero_messages_come_from_rank_zero_only(rank, caplog):
    caplog.set_level(logging.DEBUG, logger="engineering")
    rank_zero_info("an info")
    rank_zero_debug("a debug")
    with pytest.warns(UserWarning, match="a warning"):
        rank_zero_warn("a warning")
    rank(1)
    rank_zero_info("not from rank 1")
    assert [record.getMessage() for record in caplog.records] == ["an info", "a debug"]


def test_rank_zero_info_shows_on_the_console_when_no_logging_is_configured():
    code = "from engineering.utilities import rank_zero_info; rank_zero_info('hello from rank zero')"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("RANK", None)
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    assert "hello from rank zero" in shown.stderr
    hidden = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**environment, "RANK": "1"}, check=True)
    assert hidden.stderr == ""


def test_attribute_dict_is_researchs():
    assert AttributeDict is ResearchAttributeDict


def test_move_data_to_device_walks_nested_batches():
    batch = {"x": [torch.ones(2)], "y": (torch.zeros(1), "label")}
    moved = move_data_to_device(batch, "meta")
    assert moved["x"][0].device.type == "meta" and moved["y"][0].device.type == "meta"
    assert moved["y"][1] == "label"


def test_grad_norm_gives_each_parameters_norm_and_the_total():
    layer = nn.Linear(3, 2)
    layer(torch.arange(3.0)).sum().backward()
    norms = grad_norm(layer, norm_type=2)
    assert set(norms) == {"grad_2.0_norm/weight", "grad_2.0_norm/bias", "grad_2.0_norm_total"}
    assert float(norms["grad_2.0_norm/weight"]) == pytest.approx(layer.weight.grad.norm().item())
    everything = torch.cat([layer.weight.grad.flatten(), layer.bias.grad])
    assert float(norms["grad_2.0_norm_total"]) == pytest.approx(everything.norm().item())
    with pytest.raises(ValueError, match="positive number or 'inf'"):
        grad_norm(layer, norm_type=0)


def test_measure_flops_counts_a_linear_layer_on_the_meta_device():
    with torch.device("meta"):
        layer = nn.Linear(4, 3)
        x = torch.randn(2, 4)
    forward = measure_flops(layer, lambda: layer(x))
    assert forward == 2 * 2 * 4 * 3  # one multiply and one add per weight, per sample
    assert measure_flops(layer, lambda: layer(x), lambda y: y.sum()) > forward


def test_is_picklable():
    assert is_picklable({"lr": 0.1})
    assert not is_picklable(lambda: None)


def test_get_torchvision_model_and_the_availability_flags():
    from engineering.utilities.imports import _OMEGACONF_AVAILABLE, _RICH_AVAILABLE, _TORCHVISION_AVAILABLE
    from engineering.utilities.model_helpers import get_torchvision_model

    assert _TORCHVISION_AVAILABLE is True
    assert isinstance(_OMEGACONF_AVAILABLE, bool) and isinstance(_RICH_AVAILABLE, bool)
    model = get_torchvision_model("squeezenet1_1", weights=None, num_classes=3)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_cli_lightning_logo_prints_a_banner(capsys):
    engineering.cli_lightning_logo()
    assert "tribus" in capsys.readouterr().out


def test_strategy_classes_are_lightnings_hierarchy():
    assert isinstance(SingleDeviceStrategy(), Strategy)
    assert not isinstance(SingleDeviceStrategy(), ParallelStrategy)
    assert issubclass(DDPStrategy, ParallelStrategy) and issubclass(ParallelStrategy, Strategy)


def test_a_strategy_of_ones_own_runs_a_fit(tmp_path):
    class CountingStrategy(Strategy):
        optimizer_steps = 0

        def optimizer_step(self, optimizer, closure, **kwargs):
            CountingStrategy.optimizer_steps += 1
            return super().optimizer_step(optimizer, closure, **kwargs)

    trainer = Trainer(strategy=CountingStrategy(), max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(TinyModule(), tiny_loader())
    assert CountingStrategy.optimizer_steps == trainer.global_step == 4
    assert not isinstance(trainer.strategy, ParallelStrategy)
