"""ThroughputMonitor: the rates a fake clock makes exact, FLOPs and MFU when given, validation time left out."""

from __future__ import annotations

import csv

import pytest

import auxiliary.throughput
from auxiliary import CSVLogger, ThroughputMonitor
from auxiliary.throughput import Throughput
from engineering import MisconfigurationError, Trainer
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                 num_sanity_val_steps=0)


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auxiliary.throughput, "time", fake)
    return fake


class Timed(TinyModule):
    """A training step takes 0.5 s, a validation step 2 s, on the fake clock; 100 FLOPs per batch."""

    flops_per_batch = 100

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def training_step(self, batch, batch_idx):
        self.clock.now += 0.5
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.clock.now += 2.0


def rows(logger: CSVLogger) -> list[dict[str, str]]:
    with open(logger.metrics_file_path, newline="") as file:
        return list(csv.DictReader(file))


def test_training_rates_flops_and_mfu_exclude_validation_time(tmp_path, clock):
    logger = CSVLogger(tmp_path)
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: len(batch[0]), length_fn=lambda batch: 3 * len(batch[0]),
                                available_flops=400.0, window_size=3)
    Trainer(max_epochs=2, log_every_n_steps=2, logger=logger, callbacks=[monitor], default_root_dir=tmp_path,
            **NO_EXTRAS).fit(Timed(clock), tiny_loader(), tiny_loader(samples=32))
    logged = [row for row in rows(logger) if row.get("train/samples")]
    assert [int(row["step"]) for row in logged] == [1, 3, 5, 7]
    assert [float(row["train/samples"]) for row in logged] == [32, 64, 96, 128]
    assert [float(row["train/time"]) for row in logged] == [1.0, 2.0, 3.0, 4.0]  # 4 s of validation not counted
    full_window = logged[1:]  # rates need 3 updates
    assert logged[0].get("train/device/batches_per_sec", "") == ""
    for row in full_window:
        assert float(row["train/device/batches_per_sec"]) == 2.0  # one batch per 0.5 s
        assert float(row["train/device/samples_per_sec"]) == 32.0
        assert float(row["train/device/items_per_sec"]) == 96.0
        assert float(row["train/device/flops_per_sec"]) == 200.0
        assert float(row["train/device/mfu"]) == 0.5
    validation = [row for row in rows(logger) if row.get("validate/samples")]
    assert [float(row["validate/time"]) for row in validation] == [2.0, 4.0, 2.0, 4.0]  # restarts each pass


def test_throughput_counts_devices_and_checks_its_inputs():
    throughput = Throughput(world_size=2, window_size=2)
    throughput.update(time=1.0, batches=1, samples=4)
    throughput.update(time=2.0, batches=2, samples=8)
    metrics = throughput.compute()
    assert metrics["device/samples_per_sec"] == 4.0 and metrics["samples_per_sec"] == 8.0
    with pytest.raises(ValueError, match="running totals"):
        throughput.update(time=3.0, batches=5, samples=4)
    with pytest.raises(MisconfigurationError, match="window_size"):
        Throughput(window_size=1)
