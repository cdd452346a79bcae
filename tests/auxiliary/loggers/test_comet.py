"""CometLogger against the real comet_ml as an offline experiment, read back from the archive it writes
(``experiment.json`` and the ``messages.json`` lines that ``comet upload`` would send).

comet_ml is not imported here: imported before the logger turns Comet's auto-logging off, it would patch
tensorboard and also record what TensorBoardLogger writes.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest

from auxiliary import CometLogger, TensorBoardLogger
from engineering import ModelCheckpoint, Trainer
from tests.auxiliary.loggers.history import tensorboard_history
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False)
QUIET_COMET = dict(auto_output_logging=False, log_env_details=False, display_summary_level=0)


class OfflineArchive:
    def __init__(self, path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            self.experiment = json.loads(archive.read("experiment.json"))
            self.messages = [json.loads(line) for line in archive.read("messages.json").splitlines()]

    def of(self, kind: str) -> list[dict]:
        return [message["payload"] for message in self.messages if message["type"] == kind]

    def metrics(self) -> dict[str, list[tuple[int, float, int | None]]]:
        """{name: [(step, value, epoch)]} of the metrics the logger sent, without Comet's system metrics."""
        found: dict[str, list[tuple[int, float, int | None]]] = {}
        for payload in self.of("metric_msg"):
            metric = payload["metric"]
            if not metric["metricName"].startswith("sys.") and metric["metricName"] != "process duration":
                found.setdefault(metric["metricName"], []).append((metric["step"], metric["metricValue"],
                                                                   metric["epoch"]))
        return found

    def parameters(self) -> dict[str, object]:
        return {payload["param"]["paramName"]: payload["param"]["paramValue"] for payload in self.of("parameter_msg")
                if payload["param"]["source"] == "manual"}


def archives(directory: Path) -> list[OfflineArchive]:
    return [OfflineArchive(path) for path in sorted(directory.glob("*.zip"), key=lambda path: path.stat().st_mtime)]


def test_an_offline_fit_records_what_tensorboard_records_with_parameters_and_the_graph(tmp_path):
    tensorboard = TensorBoardLogger(tmp_path / "tb")
    logger = CometLogger(project="tiny", online=False, offline_directory=str(tmp_path / "comet"), **QUIET_COMET)
    trainer = Trainer(max_epochs=3, log_every_n_steps=1, logger=[tensorboard, logger], enable_checkpointing=False,
                      default_root_dir=tmp_path, **NO_EXTRAS)
    assert type(logger.experiment).__name__ == "OfflineExperiment"
    trainer.fit(TinyModule(lr=0.05), tiny_loader(), tiny_loader())
    assert (logger.name, logger.save_dir) == ("tiny", str(tmp_path / "comet"))

    (archive,) = archives(tmp_path / "comet")
    assert archive.experiment["offline_id"] == logger.version and archive.experiment["project_name"] == "tiny"
    expected = tensorboard_history(tensorboard.log_dir)
    epochs = dict(expected.pop("epoch"))  # Comet keeps the epoch beside each metric, not as a metric
    logged = archive.metrics()
    assert set(logged) == set(expected)
    for key, history in expected.items():
        assert [step for step, _, _ in logged[key]] == [step for step, _ in history], key
        assert [value for _, value, _ in logged[key]] == pytest.approx([value for _, value in history]), key
    assert [epoch for step, _, epoch in logged["val_loss"]] == [epochs[step] for step, _, _ in logged["val_loss"]]
    assert archive.parameters() == {"lr": 0.05}
    assert "TinyModule" in archive.of("graph")[0]["graph"]


def test_an_experiment_key_continues_the_same_experiment(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    first = CometLogger(online=False, offline_directory=str(tmp_path / "comet"), **QUIET_COMET)
    Trainer(max_epochs=1, log_every_n_steps=1, logger=first, callbacks=[checkpoint], default_root_dir=tmp_path,
            **NO_EXTRAS).fit(TinyModule(), tiny_loader(), tiny_loader())
    resumed = CometLogger(online=False, experiment_key=first.version, offline_directory=str(tmp_path / "comet"),
                          **QUIET_COMET)
    Trainer(max_epochs=2, log_every_n_steps=1, logger=resumed, enable_checkpointing=False, default_root_dir=tmp_path,
            **NO_EXTRAS).fit(TinyModule(), tiny_loader(), tiny_loader(), ckpt_path=checkpoint.last_model_path)

    before, after = archives(tmp_path / "comet")
    assert before.experiment["offline_id"] == after.experiment["offline_id"] == first.version == resumed.version
    assert [step for step, _, _ in before.metrics()["train_loss"]] == [0, 1, 2, 3]
    assert [step for step, _, _ in after.metrics()["train_loss"]] == [4, 5, 6, 7]
    assert [(step, epoch) for step, _, epoch in after.metrics()["val_loss"]] == [(7, 1)]


def test_only_global_rank_zero_talks_to_comet(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    logger = CometLogger(online=False, offline_directory=str(tmp_path / "comet"))
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.experiment.log_metric("ignored", 1)
    logger.finalize("success")
    assert not (tmp_path / "comet").exists() and logger.version is None


def test_a_pickled_logger_continues_the_same_experiment(tmp_path):
    """What ddp_spawn does to a logger before its processes start."""
    logger = CometLogger(online=False, offline_directory=str(tmp_path / "comet"), **QUIET_COMET)
    logger.log_metrics({"loss": 1.0}, step=0)
    copy = pickle.loads(pickle.dumps(logger))
    logger.finalize("success")
    copy.log_metrics({"loss": 0.5}, step=1)
    copy.finalize("success")

    before, after = archives(tmp_path / "comet")
    assert before.experiment["offline_id"] == after.experiment["offline_id"] == logger.version == copy.version
    assert (before.metrics()["loss"], after.metrics()["loss"]) == ([(0, 1.0, None)], [(1, 0.5, None)])
