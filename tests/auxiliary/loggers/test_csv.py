"""CSVLogger, read back with the csv module."""

from __future__ import annotations

import argparse
import csv
import os

import torch
import yaml

from auxiliary import CSVLogger
from engineering import Trainer
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def read_rows(logger: CSVLogger) -> list[dict[str, str]]:
    with open(logger.metrics_file_path, newline="") as file:
        return list(csv.DictReader(file))


def test_metrics_csv_holds_every_logged_value_at_its_step(tmp_path):
    logger = CSVLogger(tmp_path)
    trainer = Trainer(max_epochs=1, log_every_n_steps=1, logger=logger, default_root_dir=tmp_path, **NO_EXTRAS)
    trainer.fit(TinyModule(lr=0.05), tiny_loader(), tiny_loader())
    rows = read_rows(logger)
    assert set(rows[0]) == {"step", "train_loss", "epoch", "val_loss"}
    assert [row["step"] for row in rows if row["train_loss"]] == ["0", "1", "2", "3"]
    assert float(rows[-1]["val_loss"]) == trainer.callback_metrics["val_loss"].item()
    assert float([row for row in rows if row["train_loss"]][-1]["train_loss"]) == trainer.logged_metrics[
        "train_loss"].item()
    assert logger.metrics_file_path == str(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")


def test_a_new_key_widens_the_header_and_keeps_earlier_rows(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"z": 1.0}, step=0)
    logger.log_metrics({"z": 2.0}, step=1)
    logger.save()
    logger.log_metrics({"b": 3.0}, step=2)
    logger.save()
    assert read_rows(logger) == [{"step": "0", "z": "1.0", "b": ""}, {"step": "1", "z": "2.0", "b": ""},
                                 {"step": "2", "z": "", "b": "3.0"}]
    # The columns are sorted, as Lightning's metrics.csv has them.
    assert open(logger.metrics_file_path).readline().strip() == "b,step,z"


def test_rows_wait_until_a_flush_as_in_lightning(tmp_path):
    # Lightning 2.6.6 writes exactly these files for the same calls.
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=2, prefix="train")
    logger.log_metrics({"z": 1.0}, step=0)
    assert not os.path.exists(logger.metrics_file_path) and logger.experiment.metrics == [{"train-z": 1.0, "step": 0}]
    logger.log_metrics({"z": torch.tensor(2.0)}, step=1)  # (step + 1) % 2 == 0: flushed
    assert open(logger.metrics_file_path).read() == "step,train-z\n0,1.0\n1,2.0\n"
    logger.log_metrics({"b": 3.0}, step=2)
    logger.log_metrics({"b": 4.0})  # no step: the number of rows waiting, 1, so this one flushes too
    assert open(logger.metrics_file_path).read() == "step,train-b,train-z\n0,,1.0\n1,,2.0\n2,3.0,\n1,4.0,\n"
    assert logger.experiment.metrics == []


def test_the_rows_left_are_written_when_the_run_ends(tmp_path):
    logger = CSVLogger(tmp_path)  # flush_logs_every_n_steps=100: nothing is flushed during these 4 steps
    Trainer(max_epochs=1, log_every_n_steps=1, logger=logger, default_root_dir=tmp_path, **NO_EXTRAS).fit(
        TinyModule(), tiny_loader()
    )
    assert [row["step"] for row in read_rows(logger)] == ["0", "1", "2", "3"]


def test_hyperparameters_go_to_hparams_yaml(tmp_path):
    logger = CSVLogger(tmp_path, name="runs", version="baseline")
    logger.log_hyperparams(argparse.Namespace(lr=0.05, layers=[1, 2], device=object))
    text = (tmp_path / "runs" / "baseline" / "hparams.yaml").read_text()
    assert text == "device: !!python/name:builtins.object ''\nlayers:\n- 1\n- 2\nlr: 0.05\n"  # Lightning's file


def test_hparams_yaml_is_written_when_save_hyperparameters_recorded_nothing(tmp_path):
    class NoArguments(TinyModule):
        def __init__(self):
            super(TinyModule, self).__init__()  # past TinyModule's own save_hyperparameters: nothing is recorded
            self.layer = torch.nn.Linear(32, 2)
            self.save_hyperparameters()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    logger = CSVLogger(tmp_path)
    Trainer(max_epochs=1, logger=logger, default_root_dir=tmp_path, **NO_EXTRAS).fit(NoArguments(), tiny_loader())
    assert yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text()) == {}


def test_versions_count_up(tmp_path):
    CSVLogger(tmp_path).log_metrics({"a": 1.0}, step=0)
    assert CSVLogger(tmp_path).version == 1


def test_only_global_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.log_hyperparams({"lr": 0.1})
    assert not (tmp_path / "lightning_logs").exists()
