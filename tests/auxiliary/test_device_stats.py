"""DeviceStatsMonitor: CPU and memory statistics (psutil), CUDA allocator statistics, read back from metrics.csv."""

from __future__ import annotations

import csv

import pytest
import torch

from auxiliary import CSVLogger, DeviceStatsMonitor
from engineering import MisconfigurationError, Trainer
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
PREFIX = "DeviceStatsMonitor.on_train_batch_end/"


def rows(logger: CSVLogger) -> list[dict[str, str]]:
    with open(logger.metrics_file_path, newline="") as file:
        return list(csv.DictReader(file))


def test_cpu_statistics_are_logged_every_log_every_n_steps(tmp_path):
    logger = CSVLogger(tmp_path)
    Trainer(accelerator="cpu", max_epochs=1, log_every_n_steps=2, logger=logger, callbacks=[DeviceStatsMonitor()],
            default_root_dir=tmp_path, **NO_EXTRAS).fit(TinyModule(), tiny_loader(), tiny_loader())
    stats = [row for row in rows(logger) if row.get(PREFIX + "process_rss_bytes")]
    assert [row["step"] for row in stats] == ["1", "3"]
    for row in stats:
        assert float(row[PREFIX + "process_rss_bytes"]) > 10e6  # at least torch is resident
        assert 0 < float(row[PREFIX + "cpu_vm_percent"]) <= 100
        assert 0 <= float(row[PREFIX + "cpu_percent"]) <= 100
        assert 0 <= float(row[PREFIX + "cpu_swap_percent"]) <= 100
    columns = set(rows(logger)[0])
    for hook in ("on_train_batch_start", "on_validation_batch_start", "on_validation_batch_end"):
        assert f"DeviceStatsMonitor.{hook}/cpu_percent" in columns


def test_cpu_stats_false_logs_nothing_on_the_cpu(tmp_path):
    logger = CSVLogger(tmp_path)
    Trainer(accelerator="cpu", max_epochs=1, log_every_n_steps=1, logger=logger,
            callbacks=[DeviceStatsMonitor(cpu_stats=False)],
            default_root_dir=tmp_path, **NO_EXTRAS).fit(TinyModule(), tiny_loader())
    assert not any(column.startswith("DeviceStatsMonitor") for column in rows(logger)[0])


def test_cuda_memory_statistics_become_floats(monkeypatch):
    monkeypatch.setattr(torch.cuda, "memory_stats", lambda device: {"allocated_bytes.all.current": 1024,
                                                                     "num_ooms": 0})
    assert DeviceStatsMonitor().device_stats(torch.device("cuda", 0)) == {"allocated_bytes.all.current": 1024.0,
                                                                          "num_ooms": 0.0}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_allocator_statistics_are_logged(tmp_path):
    logger = CSVLogger(tmp_path)
    Trainer(accelerator="gpu", devices=1, max_epochs=1, log_every_n_steps=1, logger=logger,
            callbacks=[DeviceStatsMonitor(cpu_stats=True)], default_root_dir=tmp_path, **NO_EXTRAS).fit(
        TinyModule(), tiny_loader()
    )
    stats = [row for row in rows(logger) if row.get(PREFIX + "allocated_bytes.all.peak")]
    assert len(stats) == 4  # one row per training step
    assert float(stats[-1][PREFIX + "allocated_bytes.all.peak"]) > 0
    assert float(stats[-1][PREFIX + "process_rss_bytes"]) > 0


def test_without_a_logger_it_names_the_fix(tmp_path):
    trainer = Trainer(max_epochs=1, logger=False, callbacks=[DeviceStatsMonitor()], default_root_dir=tmp_path,
                      **NO_EXTRAS)
    with pytest.raises(MisconfigurationError, match="DeviceStatsMonitor sends its values to loggers"):
        trainer.fit(TinyModule(), tiny_loader())
