"""A full disk or a read-only directory while a file logger writes: one warning naming the file and the fix,
the logger writes nothing more, and training goes on to the end with its checkpoints intact. The error is
injected where the real writers touch the file (tensorboard's local file system, the CSV logger's ``open``)."""

from __future__ import annotations

import builtins
import csv
import errno

import pytest

from auxiliary import CSVLogger, TensorBoardLogger
from engineering import ModelCheckpoint, Trainer
from engineering.checkpointing.checkpoint import load_checkpoint
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)


class FullDiskFile:
    """A file opened for writing on a disk that has just filled up: every write fails with ENOSPC."""

    def __init__(self, file) -> None:
        self.file = file

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def fill_the_disk_after(opened_for_writing: int):
    """An ``open`` whose files for writing fail from the ``opened_for_writing``-th on (reading still works)."""
    count = 0

    def open_(path, mode="r", *args, **kwargs):
        nonlocal count
        file = builtins.open(path, mode, *args, **kwargs)
        if "r" in mode:
            return file
        count += 1
        return FullDiskFile(file) if count >= opened_for_writing else file

    return open_


def fit_logging_to(tmp_path, logger) -> tuple[Trainer, list[str]]:
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    trainer = Trainer(max_epochs=2, logger=logger, callbacks=[checkpoints], default_root_dir=tmp_path, **NO_EXTRAS)
    with pytest.warns(UserWarning) as caught:
        trainer.fit(TinyModule(), tiny_loader(), tiny_loader(samples=16))
    failures = [str(warning.message) for warning in caught if "could not write" in str(warning.message)]
    assert trainer.global_step == 8 and trainer.state.status == "finished"  # training went on to the end
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 8
    return trainer, failures


def test_csv_logger_on_a_full_disk_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)  # a write per row, as a file logger on a slow disk
    monkeypatch.setattr("auxiliary.loggers.csv.open", fill_the_disk_after(3), raising=False)
    _, failures = fit_logging_to(tmp_path, logger)
    assert len(failures) == 1
    assert failures[0].startswith(f"CSVLogger could not write {logger.metrics_file_path}: No space left on device "
                                  "[Errno 28]. To keep its logs, free space on that disk")
    assert "training goes on" in failures[0]
    with builtins.open(logger.metrics_file_path, newline="") as file:
        assert [row["step"] for row in csv.DictReader(file)] == ["0", "1"]  # the rows written before stay readable


def test_csv_logger_in_a_read_only_directory_names_the_directory_to_make_writable(tmp_path, monkeypatch):
    def read_only(path, mode="r", *args, **kwargs):
        if "r" in mode:
            return builtins.open(path, mode, *args, **kwargs)
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("auxiliary.loggers.versioned.open", read_only, raising=False)
    monkeypatch.setattr("auxiliary.loggers.csv.open", read_only, raising=False)
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)  # a write per row, as a file logger on a slow disk
    _, failures = fit_logging_to(tmp_path, logger)
    assert failures == [
        f"CSVLogger could not write {logger.log_dir}/hparams.yaml: Read-only file system [Errno 30]. To keep its "
        f"logs, make {logger.log_dir} writable, or pass a save_dir you can write to. It writes nothing more in this "
        "run; training goes on, and checkpoints are written (and checked) on their own."
    ]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # tensorboard's writer thread
def test_tensorboard_logger_on_a_full_disk_warns_once_naming_its_event_file(tmp_path, monkeypatch):
    from tensorboard.compat.tensorflow_stub.io import gfile

    def full_disk(self, filename, file_content, binary_mode=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gfile.LocalFileSystem, "append", full_disk)  # the event file's first write still lands
    logger = TensorBoardLogger(tmp_path)
    _, failures = fit_logging_to(tmp_path, logger)
    assert len(failures) == 1
    assert failures[0].startswith(f"TensorBoardLogger could not write {logger.log_dir}/events.out.tfevents.")
    assert ": No space left on device [Errno 28]. To keep its logs, free space on that disk" in failures[0]
