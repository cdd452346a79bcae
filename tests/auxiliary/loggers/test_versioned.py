"""hparams.yaml as Lightning writes it, whatever the hyperparameters hold (files compared with Lightning 2.6.6's)."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import threading

import numpy as np
import pytest
import torch
import yaml

from auxiliary import CSVLogger, TensorBoardLogger
from engineering import Trainer
from tests.helpers import TinyModule, tiny_loader


@dataclasses.dataclass
class Inner:
    depth: int = 2


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    name: str = "x"


class Color(enum.Enum):
    RED = 1


def activation(x):
    return x


class ComplexSettings(TinyModule):
    def __init__(self, scale: torch.Tensor, offsets: np.ndarray, config: Outer, namespace: argparse.Namespace,
                 color: Color, function, lr: float = 0.1) -> None:
        super().__init__(lr)
        self.save_hyperparameters()


# What Lightning 2.6.6 writes for these values (its save_hparams_to_yaml, without omegaconf), up to the array and
# tensor, which it writes as tagged binary.
EXPECTED = f"""color: RED
config: !!python/object:{__name__}.Outer
  inner: !!python/object:{__name__}.Inner
    depth: 2
  name: x
function: !!python/name:{__name__}.activation ''
lr: 0.1
namespace: !!python/object:argparse.Namespace
  depth: 3
"""


@pytest.mark.parametrize("logger_class", [CSVLogger, TensorBoardLogger])
def test_complex_hyperparameters_are_written_as_lightning_writes_them(tmp_path, logger_class):
    model = ComplexSettings(torch.tensor([1.0, 2.0]), np.arange(2), Outer(), argparse.Namespace(depth=3), Color.RED,
                            activation)
    trainer = Trainer(max_epochs=1, logger=logger_class(tmp_path), enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, tiny_loader())
    text = open(f"{trainer.log_dir}/hparams.yaml").read()
    assert text.startswith(EXPECTED + "offsets: !!python/object/apply:numpy")
    saved = yaml.unsafe_load(text)
    assert np.array_equal(saved["offsets"], np.arange(2)) and torch.equal(saved["scale"], torch.tensor([1.0, 2.0]))

def test_a_value_yaml_cannot_represent_is_skipped_with_lightnings_warning(tmp_path):
    logger = CSVLogger(tmp_path, name="runs", version="v")
    with pytest.warns(UserWarning, match="Skipping 'lock' parameter because it is not possible to safely dump to YAML"):
        logger.log_hyperparams({"lr": 0.05, "lock": threading.Lock()})
    assert (tmp_path / "runs" / "v" / "hparams.yaml").read_text() == "lr: 0.05\n"
    assert logger.hparams["lock"] == "lock"
