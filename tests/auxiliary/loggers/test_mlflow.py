"""MLFlowLogger against a real MLflow: a tracking server started here, a sqlite store, a folder store; read back
with ``MlflowClient``."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from auxiliary import MLFlowLogger, TensorBoardLogger
from engineering import Callback, ModelCheckpoint, Trainer
from tests.auxiliary.loggers.history import tensorboard_history
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1: a sqlite backend store and a local artifact folder, stopped by the test."""

    def __init__(self, root: Path) -> None:
        self.database_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.artifacts = root / "artifacts"
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.log = open(root / "server.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", self.database_uri,
             "--artifacts-destination", str(self.artifacts)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,  # its uvicorn child dies with it
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job workers: a faster start
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (root / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"mlflow server did not answer within 120 s:\n{(root / 'server.log').read_text()}")

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, how)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    # One quick try per HTTP call: the logger retries by itself, and a dead server must not stall a test for minutes.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    running = MlflowServer(tmp_path / "server")
    yield running
    running.stop()


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key))


def assert_same_history(client: MlflowClient, run_id: str, tensorboard: dict[str, list[tuple[int, float]]]):
    assert set(client.get_run(run_id).data.metrics) == set(tensorboard)
    for key, expected in tensorboard.items():
        logged = history(client, run_id, key)
        assert [step for step, _ in logged] == [step for step, _ in expected], key
        assert [value for _, value in logged] == pytest.approx([value for _, value in expected], rel=1e-6), key


def test_a_fit_against_a_server_reads_back_like_tensorboard_with_params_tags_status_and_checkpoints(tmp_path, server):
    tensorboard = TensorBoardLogger(tmp_path / "tb")
    logger = MLFlowLogger(experiment_name="tiny", run_name="first", tracking_uri=server.uri,
                          tags={"team": "vision"}, log_model=True)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val_loss", save_top_k=2)
    trainer = Trainer(max_epochs=3, log_every_n_steps=1, logger=[tensorboard, logger], callbacks=[checkpoint],
                      default_root_dir=tmp_path, **NO_EXTRAS)
    trainer.fit(TinyModule(lr=0.05), tiny_loader(), tiny_loader())

    client = MlflowClient(server.uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.05"}
    assert run.data.tags["team"] == "vision" and run.data.tags["mlflow.runName"] == "first"
    assert client.get_experiment(run.info.experiment_id).name == "tiny"
    assert (logger.name, logger.version, logger.save_dir) == (run.info.experiment_id, run.info.run_id, None)
    assert_same_history(client, logger.run_id, tensorboard_history(tensorboard.log_dir))
    assert [step for step, _ in history(client, logger.run_id, "train_loss")] == list(range(12))

    # log_model=True uploads the kept checkpoints once, at the end: each under a folder named after its file.
    kept = sorted(Path(path).name for path in checkpoint.best_k_models)
    folders = sorted(artifact.path for artifact in client.list_artifacts(logger.run_id))
    assert folders == sorted(name.removesuffix(".ckpt") for name in kept)
    best = Path(checkpoint.best_model_path).stem
    files = {artifact.path for artifact in client.list_artifacts(logger.run_id, best)}
    assert files == {f"{best}/{best}.ckpt", f"{best}/metadata.yaml", f"{best}/aliases.txt"}
    downloaded = Path(client.download_artifacts(logger.run_id, best, str(tmp_path / "download")))
    assert (downloaded / f"{best}.ckpt").read_bytes() == Path(checkpoint.best_model_path).read_bytes()
    metadata = yaml.safe_load((downloaded / "metadata.yaml").read_text())
    assert metadata["score"] == pytest.approx(checkpoint.best_model_score.item())
    assert (downloaded / "aliases.txt").read_text() == "['latest', 'best']"


class KillServer(Callback):
    """Stops the tracking server after a number of optimizer steps, once the logger delivered what it had."""

    def __init__(self, server: MlflowServer, logger: MLFlowLogger, after_steps: int) -> None:
        self.server, self.logger, self.after_steps = server, logger, after_steps

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.after_steps:
            self.logger.save()
            self.server.stop(signal.SIGKILL)


def test_a_server_killed_mid_fit_leaves_training_running_with_a_warning_and_the_metrics_so_far(tmp_path, server):
    logger = MLFlowLogger(tracking_uri=server.uri, delivery_timeout_s=3)
    trainer = Trainer(max_epochs=2, log_every_n_steps=1, logger=logger, enable_checkpointing=False,
                      callbacks=[KillServer(server, logger, after_steps=3)], default_root_dir=tmp_path, **NO_EXTRAS)
    with pytest.warns(RuntimeWarning, match="MLflow: log_metrics at step") as caught:
        trainer.fit(TinyModule(), tiny_loader(), tiny_loader())
    assert trainer.global_step == 8 and trainer.state.finished
    assert any("not delivered" in str(warning.message) for warning in caught)

    # The server's own store, read without the server: what was logged before the kill is there.
    stored = MlflowClient(server.database_uri)
    train_loss = history(stored, logger.run_id, "train_loss")
    assert [step for step, _ in train_loss] == [0, 1, 2]
    assert stored.get_run(logger.run_id).data.params == {"lr": "0.1"}


def test_a_sqlite_store_without_a_server_and_a_resumed_run_continues_the_same_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    first = MLFlowLogger(tracking_uri=uri)
    Trainer(max_epochs=1, log_every_n_steps=1, logger=first, callbacks=[checkpoint], default_root_dir=tmp_path,
            **NO_EXTRAS).fit(TinyModule(), tiny_loader(), tiny_loader())

    resumed = MLFlowLogger(tracking_uri=uri, run_id=first.run_id)
    Trainer(max_epochs=2, log_every_n_steps=1, logger=resumed, default_root_dir=tmp_path, enable_checkpointing=False,
            **NO_EXTRAS).fit(TinyModule(), tiny_loader(), tiny_loader(), ckpt_path=checkpoint.last_model_path)

    client = MlflowClient(uri)
    assert resumed.run_id == first.run_id
    assert len(client.search_runs([first.experiment_id])) == 1
    assert [step for step, _ in history(client, first.run_id, "train_loss")] == list(range(8))
    assert [step for step, _ in history(client, first.run_id, "val_loss")] == [3, 7]
    assert client.get_run(first.run_id).info.status == "FINISHED"


def test_nested_hyperparameters_are_flattened_and_odd_metric_names_are_cleaned_with_a_warning(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MLFlowLogger(tracking_uri=uri, prefix="train")
    logger.log_hyperparams({"optimizer": {"name": "sgd", "lr": 0.1}, "layers": [1, 2]})
    with pytest.warns(RuntimeWarning, match="'train-loss@1' is logged as 'train-loss1'"):
        logger.log_metrics({"loss@1": 0.5}, step=4)
    logger.finalize("failed")
    run = MlflowClient(uri).get_run(logger.run_id)
    assert run.data.params == {"optimizer/name": "sgd", "optimizer/lr": "0.1", "layers": "[1, 2]"}
    assert history(MlflowClient(uri), logger.run_id, "train-loss1") == [(4, 0.5)]
    assert run.info.status == "FAILED"


def test_a_folder_store_needs_mlflows_consent_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(RuntimeError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        _ = MLFlowLogger(save_dir=tmp_path / "mlruns").experiment
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    logger = MLFlowLogger(save_dir=tmp_path / "mlruns")
    logger.log_metrics({"loss": 1.5}, step=2)
    logger.finalize("success")
    assert logger.save_dir == str(tmp_path / "mlruns")
    assert (tmp_path / "mlruns" / logger.experiment_id / logger.run_id / "metrics" / "loss").is_file()
    assert history(MlflowClient(f"file://{tmp_path / 'mlruns'}"), logger.run_id, "loss") == [(2, 1.5)]


def test_only_global_rank_zero_talks_to_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    logger = MLFlowLogger(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.experiment.log_param("ignored", 1)
    logger.finalize("success")
    assert not (tmp_path / "mlflow.db").exists()


def test_a_pickled_logger_logs_to_the_same_run(tmp_path):
    """What ddp_spawn does to a logger before its processes start."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MLFlowLogger(tracking_uri=uri)
    logger.log_metrics({"loss": 1.0}, step=0)
    copy = pickle.loads(pickle.dumps(logger))
    copy.log_metrics({"loss": 0.5}, step=1)
    copy.finalize("success")
    logger.finalize("success")
    assert copy.run_id == logger.run_id
    assert history(MlflowClient(uri), logger.run_id, "loss") == [(0, 1.0), (1, 0.5)]


DDP_SCRIPT = """
import sys

from auxiliary import MLFlowLogger
from engineering import Trainer
from tests.helpers import TinyModule, tiny_loader

if __name__ == "__main__":
    trainer = Trainer(strategy="ddp_spawn", devices=2, accelerator="cpu", max_epochs=1, log_every_n_steps=1,
                      logger=MLFlowLogger(tracking_uri=sys.argv[1]), enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(TinyModule(), tiny_loader())
"""


@pytest.mark.slow  # two spawned processes importing torch and mlflow: about 40 s on two cores
def test_under_ddp_only_rank_zero_opens_a_run_and_logs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT)
    root = Path(__file__).resolve().parents[3]
    environment = {key: value for key, value in os.environ.items() if key not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    environment["PYTHONPATH"] = str(root)
    result = subprocess.run([sys.executable, str(script), uri], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("lightning_logs").experiment_id])
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(client, run.info.run_id, "train_loss")] == [0, 1]  # 2 ranks x 2 steps, once
