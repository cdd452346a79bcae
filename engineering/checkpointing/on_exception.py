"""OnExceptionCheckpoint: the run's state saved when training raises, so a crash loses nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engineering.bus.callback import Callback
from engineering.errors import MisconfigurationError


class OnExceptionCheckpoint(Callback):
    """Save ``<dirpath>/<filename>.ckpt`` when training raises; removed again after a run that succeeds."""

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str | os.PathLike, filename: str = "on_exception") -> None:
        if not filename:
            raise MisconfigurationError("OnExceptionCheckpoint(filename='') : give the file a name.")
        self.dirpath = os.fspath(dirpath)
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        trainer.save_checkpoint(self.ckpt_path)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if trainer.state.finished:  # tribus runs teardown after errors too: keep the file then
            Path(self.ckpt_path).unlink(missing_ok=True)
