"""NeptuneLogger against the real neptune client: offline runs read back from the offline store with neptune's
own DiskQueue and operation classes, debug runs read back through the run object."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import pytest
from neptune.core.components.queue.disk_queue import DiskQueue
from neptune.internal.operation import Operation

from auxiliary import NeptuneLogger, TensorBoardLogger
from engineering import ModelCheckpoint, Trainer
from tests.auxiliary.loggers.history import tensorboard_history
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False)
QUIET_NEPTUNE = dict(capture_stdout=False, capture_stderr=False, capture_hardware_metrics=False,
                     capture_traceback=False, source_files=[], git_ref=False)


def offline_operations(directory: Path) -> list[Operation]:
    """Every operation in one offline run's store, in the order Neptune queued them."""
    queue = DiskQueue(directory, to_dict=lambda operation: operation.to_dict(), from_dict=Operation.from_dict,
                      lock=threading.RLock())
    operations = []
    while (element := queue.get()) is not None:
        operations.append(element.obj)
    queue.close()
    return operations


def offline_stores() -> list[Path]:
    return sorted(Path(".neptune", "offline").glob("run__*"))


def series(operations: list[Operation]) -> dict[str, list[tuple[float, float]]]:
    """{"training/train_loss": [(step, value)]} from the LogFloats operations."""
    found: dict[str, list[tuple[float, float]]] = {}
    for operation in operations:
        if type(operation).__name__ == "LogFloats":
            found.setdefault("/".join(operation.path), []).extend((value.step, value.value)
                                                                  for value in operation.values)
    return found


def assignments(operations: list[Operation]) -> dict[str, object]:
    return {"/".join(operation.path): operation.value for operation in operations
            if type(operation).__name__.startswith("Assign")}


def assert_same_history(logged: dict[str, list[tuple[float, float]]], log_dir: str) -> None:
    expected = {f"training/{key}": history for key, history in tensorboard_history(log_dir).items()}
    assert set(logged) == set(expected)
    for key, history in expected.items():
        assert [step for step, _ in logged[key]] == [step for step, _ in history], key
        assert [value for _, value in logged[key]] == pytest.approx([value for _, value in history]), key


def test_an_offline_fit_stores_what_tensorboard_records_with_hyperparameters_status_and_checkpoints(tmp_path):
    tensorboard = TensorBoardLogger(tmp_path / "tb")
    logger = NeptuneLogger(project="tribus/tiny", name="first", mode="offline", **QUIET_NEPTUNE)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val_loss", save_top_k=2)
    trainer = Trainer(max_epochs=3, log_every_n_steps=1, logger=[tensorboard, logger], callbacks=[checkpoint],
                      default_root_dir=tmp_path, **NO_EXTRAS)
    trainer.fit(TinyModule(lr=0.05), tiny_loader(), tiny_loader())
    assert (logger.name, logger.version, logger.save_dir) == ("first", "OFFLINE", str(tmp_path / ".neptune"))
    logger.run.stop()

    (store,) = offline_stores()
    operations = offline_operations(store)
    assert_same_history(series(operations), tensorboard.log_dir)
    assigned = assignments(operations)
    assert assigned["training/hyperparams/lr"] == 0.05
    assert assigned["training/status"] == "success"
    assert assigned["training/model/best_model_path"] == checkpoint.best_model_path
    assert assigned["training/model/best_model_score"] == pytest.approx(checkpoint.best_model_score.item())
    uploads = [operation for operation in operations if type(operation).__name__ == "UploadFile"]
    assert {"/".join(upload.path) for upload in uploads} == {"training/model/checkpoints/epoch=0-step=4",
                                                              "training/model/checkpoints/epoch=1-step=8",
                                                              "training/model/checkpoints/epoch=2-step=12"}
    removed = {"/".join(operation.path) for operation in operations if type(operation).__name__ == "DeleteAttribute"}
    kept = {f"training/model/checkpoints/{Path(path).stem}" for path in checkpoint.best_k_models}
    assert {"/".join(upload.path) for upload in uploads} - removed == kept


def test_a_resumed_fit_continues_the_same_run(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    first = NeptuneLogger(project="tribus/tiny", mode="offline", log_model_checkpoints=False, **QUIET_NEPTUNE)
    Trainer(max_epochs=1, log_every_n_steps=1, logger=first, callbacks=[checkpoint], default_root_dir=tmp_path,
            **NO_EXTRAS).fit(TinyModule(), tiny_loader(), tiny_loader())
    resumed = NeptuneLogger(run=first.run, log_model_checkpoints=False)
    Trainer(max_epochs=2, log_every_n_steps=1, logger=resumed, enable_checkpointing=False, default_root_dir=tmp_path,
            **NO_EXTRAS).fit(TinyModule(), tiny_loader(), tiny_loader(), ckpt_path=checkpoint.last_model_path)
    resumed.run.stop()

    (store,) = offline_stores()
    logged = series(offline_operations(store))
    assert [step for step, _ in logged["training/train_loss"]] == list(range(8))
    assert [step for step, _ in logged["training/val_loss"]] == [3, 7]


def test_a_debug_run_keeps_the_history_in_memory(tmp_path):
    tensorboard = TensorBoardLogger(tmp_path / "tb")
    logger = NeptuneLogger(mode="debug", prefix="fit", **QUIET_NEPTUNE)
    Trainer(max_epochs=2, log_every_n_steps=1, logger=[tensorboard, logger], enable_checkpointing=False,
            default_root_dir=tmp_path, **NO_EXTRAS).fit(TinyModule(lr=0.05), tiny_loader(), tiny_loader())
    values = logger.run["fit/train_loss"].fetch_values()
    expected = tensorboard_history(tensorboard.log_dir)["train_loss"]
    assert list(values["step"]) == [step for step, _ in expected]
    assert list(values["value"]) == pytest.approx([value for _, value in expected])
    assert logger.run["fit/hyperparams/lr"].fetch() == 0.05
    assert not offline_stores()
    logger.run.stop()


def test_a_run_and_the_arguments_for_a_new_one_are_refused_together():
    with pytest.raises(ValueError, match="pass either run=... or the arguments for a new one"):
        NeptuneLogger(run=object(), project="tribus/tiny")


def test_only_global_rank_zero_talks_to_neptune(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    logger = NeptuneLogger(mode="offline", **QUIET_NEPTUNE)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.run["ignored"] = 1
    logger.finalize("success")
    assert not Path(".neptune").exists()


def test_a_pickled_logger_leaves_its_run_behind_and_logs_on(tmp_path):
    """What ddp_spawn does to a logger; a debug run has no id to reopen, so the copy starts its own."""
    logger = NeptuneLogger(mode="debug", **QUIET_NEPTUNE)
    logger.log_metrics({"loss": 1.0}, step=0)
    copy = pickle.loads(pickle.dumps(logger))
    copy.log_metrics({"loss": 0.5}, step=1)
    copy.finalize("success")
    logger.finalize("success")
    assert copy.run is not logger.run
    assert copy.run["training/loss"].fetch_last() == 0.5
    copy.run.stop()
    logger.run.stop()
