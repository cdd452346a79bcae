"""WandbLogger against the real wandb in offline mode, read back from the run's ``.wandb`` file.

wandb 0.31 writes the file from its Go core and no longer ships a Python reader, so ``records`` reads the
container (W&B's leveldb-style log: 32 KiB blocks of checksummed chunks) and parses each record with wandb's own
protobuf schema, ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import wandb
from wandb.proto import wandb_internal_pb2

from auxiliary import TensorBoardLogger, WandbLogger
from engineering import ModelCheckpoint, Trainer
from tests.auxiliary.loggers.history import tensorboard_history
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False)
BLOCK_BYTES, CHUNK_HEADER_BYTES = 32 * 1024, 7
FULL, LAST = 1, 4  # chunk kinds that end a record


@pytest.fixture(autouse=True)
def wandb_stays_local(tmp_path, monkeypatch):
    """No login, no prompts, and wandb's caches and staged artifacts under the test's folder."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable, folder in [("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                             ("WANDB_CONFIG_DIR", "config"), ("WANDB_ARTIFACT_DIR", "artifacts")]:
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home" / folder))
    yield
    wandb.finish()


def close_runs() -> None:
    """Finish the run and stop wandb's service: only then is every record on disk (finish alone returns earlier)."""
    wandb.finish()
    wandb.teardown()


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    position, pieces = CHUNK_HEADER_BYTES, b""  # the file header fills the first chunk header's place
    while position + CHUNK_HEADER_BYTES <= len(data):
        room = BLOCK_BYTES - position % BLOCK_BYTES
        if room < CHUNK_HEADER_BYTES:  # a block's tail too small for a header is padding
            position += room
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position:position + CHUNK_HEADER_BYTES])
        pieces += data[position + CHUNK_HEADER_BYTES:position + CHUNK_HEADER_BYTES + length]
        position += CHUNK_HEADER_BYTES + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            yield record


class OfflineRun:
    """One offline run directory, as wandb wrote it."""

    def __init__(self, directory: Path) -> None:
        (self.file,) = directory.glob("run-*.wandb")
        self.records = list(records(self.file))

    def of(self, kind: str) -> list:
        return [getattr(record, kind) for record in self.records if record.WhichOneof("record_type") == kind]

    @property
    def run_id(self) -> str:
        return self.of("run")[0].run_id

    def rows(self) -> list[dict[str, object]]:
        """Each logged row; a media or histogram value comes as one item per field, rebuilt here as a dict."""
        rows = []
        for history in self.of("history"):
            row: dict[str, object] = {}
            for item in history.item:
                *parents, leaf = list(item.nested_key) or [item.key]
                target = row
                for parent in parents:
                    target = target.setdefault(parent, {})
                target[leaf] = json.loads(item.value_json)
            rows.append(row)
        return rows

    def history(self, key: str) -> list[tuple[int, float]]:
        return [(row["trainer/global_step"], row[key]) for row in self.rows() if key in row]

    def config(self) -> dict[str, object]:
        updates = [item for run in self.of("run") for item in run.config.update]
        updates += [item for config in self.of("config") for item in config.update]
        return {item.key: json.loads(item.value_json) for item in updates if item.key != "_wandb"}


def offline_runs(save_dir: Path) -> list[OfflineRun]:
    return [OfflineRun(directory) for directory in sorted((save_dir / "wandb").glob("offline-run-*"))]


def test_an_offline_fit_records_what_tensorboard_records_with_config_and_checkpoint_artifacts(tmp_path):
    tensorboard = TensorBoardLogger(tmp_path / "tb")
    logger = WandbLogger(project="tiny", name="first", save_dir=tmp_path / "wb", offline=True, log_model="all")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val_loss", save_top_k=2)
    trainer = Trainer(max_epochs=3, log_every_n_steps=1, logger=[tensorboard, logger], callbacks=[checkpoint],
                      default_root_dir=tmp_path, **NO_EXTRAS)
    trainer.fit(TinyModule(lr=0.05), tiny_loader(), tiny_loader())
    run_id = logger.version
    close_runs()

    (run,) = offline_runs(tmp_path / "wb")
    assert run.run_id == run_id and run.of("run")[0].project == "tiny" and run.of("run")[0].display_name == "first"
    expected = tensorboard_history(tensorboard.log_dir)
    logged = {key for row in run.rows() for key in row if not key.startswith("_")} - {"trainer/global_step"}
    assert logged == set(expected)
    for key, history in expected.items():
        assert [step for step, _ in run.history(key)] == [step for step, _ in history], key
        assert [value for _, value in run.history(key)] == pytest.approx([value for _, value in history]), key
    assert run.config() == {"lr": 0.05}

    artifacts = run.of("artifact")
    assert len(artifacts) == 3  # "all": one version per saved file, each epoch
    assert {artifact.name for artifact in artifacts} == {f"model-{run_id}"}
    assert all(artifact.type == "model" for artifact in artifacts)
    assert [entry.path for entry in artifacts[-1].manifest.contents] == ["model.ckpt"]
    best = [artifact for artifact in artifacts if "best" in artifact.aliases]
    assert json.loads(best[-1].metadata)["score"] == pytest.approx(checkpoint.best_model_score.item())


def test_wandb_mode_offline_in_the_environment_and_a_resumed_run_continues_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    Trainer(max_epochs=1, log_every_n_steps=1, logger=WandbLogger(save_dir=tmp_path, id="tiny-run"),
            callbacks=[checkpoint], default_root_dir=tmp_path, **NO_EXTRAS).fit(TinyModule(), tiny_loader(), tiny_loader())
    wandb.finish()
    resumed = WandbLogger(save_dir=tmp_path, version="tiny-run")
    Trainer(max_epochs=2, log_every_n_steps=1, logger=resumed, enable_checkpointing=False, default_root_dir=tmp_path,
            **NO_EXTRAS).fit(TinyModule(), tiny_loader(), tiny_loader(), ckpt_path=checkpoint.last_model_path)
    assert resumed.version == "tiny-run"
    close_runs()

    first, second = offline_runs(tmp_path)
    assert first.run_id == second.run_id == "tiny-run"
    assert [step for step, _ in first.history("train_loss")] == [0, 1, 2, 3]
    assert [step for step, _ in second.history("train_loss")] == [4, 5, 6, 7]
    assert second.history("val_loss")[0][0] == 7


def test_watch_tables_and_images_reach_the_run(tmp_path):
    logger = WandbLogger(save_dir=tmp_path, offline=True)
    module = TinyModule()
    logger.watch(module, log="all", log_freq=1)
    Trainer(max_epochs=1, limit_train_batches=2, log_every_n_steps=1, logger=logger, enable_checkpointing=False,
            default_root_dir=tmp_path, **NO_EXTRAS).fit(module, tiny_loader())
    logger.log_table("predictions", columns=["input", "label"], data=[["a", 1], ["b", 0]], step=2)
    logger.log_image("samples", [torch.rand(3, 8, 8), torch.rand(3, 8, 8)], step=2, caption=["one", "two"])
    with pytest.raises(ValueError, match="caption has 1 values for 2 items"):
        logger.log_image("samples", [torch.rand(3, 8, 8)] * 2, caption=["one"])
    logger.finalize("success")
    close_runs()

    (run,) = offline_runs(tmp_path)
    keys = {key for row in run.rows() for key in row}
    assert {"gradients/layer.weight", "parameters/layer.weight"} <= keys
    (table_row,) = [row for row in run.rows() if "predictions" in row]
    assert table_row["predictions"]["_type"] == "table-file" and table_row["predictions"]["nrows"] == 2
    assert table_row["trainer/global_step"] == 2
    (image_row,) = [row for row in run.rows() if "samples" in row]
    assert image_row["samples"]["count"] == 2 and image_row["samples"]["captions"] == ["one", "two"]


def test_only_global_rank_zero_talks_to_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    logger = WandbLogger(save_dir=tmp_path / "wb", offline=True)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.experiment.log({"ignored": 1})
    logger.finalize("success")
    assert not (tmp_path / "wb").exists() and wandb.run is None


def test_a_pickled_logger_continues_the_same_run(tmp_path):
    """What ddp_spawn does to a logger before its processes start; the copy runs where no run is open."""
    logger = WandbLogger(save_dir=tmp_path, offline=True)
    logger.log_metrics({"loss": 1.0}, step=0)
    copy = pickle.loads(pickle.dumps(logger))
    logger.finalize("success")
    close_runs()
    copy.log_metrics({"loss": 0.5}, step=1)
    copy.finalize("success")
    close_runs()

    first, second = offline_runs(tmp_path)
    assert first.run_id == second.run_id == logger.version == copy.version
    assert (first.history("loss"), second.history("loss")) == ([(0, 1.0)], [(1, 0.5)])
