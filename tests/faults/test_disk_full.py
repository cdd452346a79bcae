"""The disk fills up while a checkpoint is being written: ``OSError(ENOSPC)`` injected at the file layer.

From the fourth optimizer step on, every file the checkpoint writer opens accepts a few hundred bytes and then
fails as a full disk does. Training stops with a CheckpointError naming the fix; no file under a final name is
truncated (each loads, checksum included), the previous ``last.ckpt`` survives, and no temporary file is left.
"""

from __future__ import annotations

import errno
import os

import pytest

from engineering import Callback, ModelCheckpoint, Trainer
from engineering.checkpointing.checkpoint import CheckpointError, load_checkpoint
from tests.helpers import QUIET, TinyModule, tiny_loader

FULL_FROM_STEP = 3
ROOM = 300  # bytes a file may take before the disk is full


class FullDiskFile:
    """A file on a disk with ``ROOM`` bytes left: writes past them fail, as write(2) does with ENOSPC."""

    def __init__(self, file) -> None:
        self.file, self.written = file, 0

    def write(self, data) -> int:
        if self.written + len(data) > ROOM:
            self.file.write(bytes(data[: ROOM - self.written]))  # what fitted reaches the file
            self.written = ROOM
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()


class FillTheDisk(Callback):
    def __init__(self, monkeypatch) -> None:
        self.monkeypatch = monkeypatch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == FULL_FROM_STEP:
            real_fdopen = os.fdopen
            self.monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: FullDiskFile(real_fdopen(*args, **kwargs)))


def test_a_full_disk_during_a_checkpoint_write_leaves_no_truncated_file_and_keeps_the_previous_one(
    tmp_path, monkeypatch
):
    directory = tmp_path / "checkpoints"
    saver = ModelCheckpoint(dirpath=directory, save_last=True, save_top_k=-1, every_n_train_steps=1)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[FillTheDisk(monkeypatch), saver],
                      **{**QUIET, "enable_checkpointing": True})
    with pytest.raises(CheckpointError, match="the disk .* is full: free space.*Nothing was replaced"):
        trainer.fit(TinyModule(), tiny_loader())
    monkeypatch.undo()

    files = sorted(path.name for path in directory.iterdir())
    assert not [name for name in files if name.endswith(".tmp")], files
    for path in directory.glob("*.ckpt"):
        load_checkpoint(path)  # whole: the checksum matches
    assert load_checkpoint(directory / "last.ckpt")["global_step"] == FULL_FROM_STEP - 1
    assert "epoch=0-step=3.ckpt" not in files and "epoch=0-step=2.ckpt" in files
