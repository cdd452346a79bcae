"""A duration as val_check_interval validates as Lightning 2.6.6 does (the sequences were recorded from Lightning
with the same program and the same fake clock: one second passes in each training step)."""

from __future__ import annotations

import datetime
import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engineering import MisconfigurationError, Trainer
from research import LightningModule
from tests.helpers import QUIET


class Clocked(LightningModule):
    """Each training step moves the clock one second on; the module records training steps and validations."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.clock, self.events = clock, []

    def training_step(self, batch, batch_idx):
        self.clock[0] += 1.0
        self.events.append(f"t{self.current_epoch}.{batch_idx}")
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.events.append("V")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(samples: int) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(samples, 2)), batch_size=2)


EVERY_TWO_BATCHES = "V t0.0 t0.1 V t0.2 t0.3 V t1.0 t1.1 V t1.2 t1.3 V t2.0 t2.1 V t2.2 t2.3 V"
EVERY_THREE_BATCHES = "V t0.0 t0.1 t0.2 V t0.3 t1.0 t1.1 V t1.2 t1.3 t2.0 V t2.1 t2.2 t2.3 V"


@pytest.mark.parametrize("flags, expected", [
    ({"val_check_interval": "00:00:00:02"}, EVERY_TWO_BATCHES),
    ({"val_check_interval": datetime.timedelta(seconds=2.5)}, EVERY_THREE_BATCHES),
    ({"val_check_interval": {"seconds": 3}}, EVERY_THREE_BATCHES),
    ({"val_check_interval": {"seconds": 3}, "check_val_every_n_epoch": None}, EVERY_THREE_BATCHES),
    # only epoch 1 validates: the time that passed in epoch 0 makes its first batch validate
    ({"val_check_interval": {"seconds": 3}, "check_val_every_n_epoch": 2},
     "V t0.0 t0.1 t0.2 t0.3 t1.0 V t1.1 t1.2 t1.3 V t2.0 t2.1 t2.2 t2.3"),
    ({"val_check_interval": {"seconds": 100}}, "V t0.0 t0.1 t0.2 t0.3 t1.0 t1.1 t1.2 t1.3 t2.0 t2.1 t2.2 t2.3"),
    ({"val_check_interval": {"seconds": 3}, "fast_dev_run": 2}, "t0.0 t0.1 V"),
])
def test_validation_runs_when_the_duration_has_passed(tmp_path, monkeypatch, flags, expected):
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    model = Clocked(clock)
    trainer = Trainer(**QUIET, default_root_dir=tmp_path, max_epochs=3, num_sanity_val_steps=1, **flags)
    trainer.fit(model, loader(8), loader(4))
    assert " ".join(model.events) == expected
    if "fast_dev_run" not in flags:
        assert trainer.val_check_interval == flags["val_check_interval"] and trainer.val_check_batch is None


@pytest.mark.parametrize("value, error, message", [
    ("1:2:3", MisconfigurationError, r"Invalid time format for `val_check_interval`: '1:2:3'. Expected 'DD:HH:MM:SS'."),
    ("a:b:c:d", MisconfigurationError,
     r"Non-integer component in `val_check_interval` string: 'a:b:c:d'. Use 'DD:HH:MM:SS'."),
    ({"sekonds": 1}, TypeError, r"'sekonds' is an invalid keyword argument"),
])
def test_a_malformed_duration_is_refused_when_the_trainer_is_built(value, error, message):
    with pytest.raises(error, match=message):
        Trainer(val_check_interval=value)


def test_a_fraction_needs_epochs_to_be_a_fraction_of(tmp_path):
    with pytest.raises(MisconfigurationError, match=r"`val_check_interval` should be an integer or a time-based "
                                                    r"duration .* when `check_val_every_n_epoch=None`."):
        Trainer(val_check_interval=0.5, check_val_every_n_epoch=None)
    assert Trainer(check_val_every_n_epoch=None, default_root_dir=tmp_path).val_check_interval == 1.0
