"""Checkpoints: what is saved, atomic writes, safe loads, restoring a run, and ModelCheckpoint.

Keys follow Lightning (``epoch``, ``global_step``, ``state_dict``, ``optimizer_states``,
``lr_schedulers``, ``callbacks``, ``hyper_parameters``) so a Lightning checkpoint loads here; the
tribus ``progress`` and ``format_version`` ride alongside.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from engineering import events
from engineering.events import Callback

FORMAT_VERSION = 1


def build_checkpoint(trainer: Any, weights_only: bool = False) -> dict[str, Any]:
    """Everything needed to resume ``trainer``'s run (or just the weights)."""
    module = trainer.lightning_module
    progress = trainer.progress
    checkpoint: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "epoch": progress.epoch,
        "global_step": progress.global_step,
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "hparams_name": "hparams",
    }
    if not weights_only:
        checkpoint["progress"] = dataclasses.asdict(progress)
        checkpoint["optimizer_states"] = [optimizer.state_dict() for optimizer in trainer.optimizers]
        checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
        checkpoint["precision"] = trainer.strategy.precision.state_dict()
        checkpoint["callbacks"] = {callback.state_key: callback.state_dict() for callback in trainer.callbacks}
        datamodule = trainer.datamodule
        if datamodule is not None:
            checkpoint[type(datamodule).__qualname__] = datamodule.state_dict()
            checkpoint["datamodule_hyper_parameters"] = dict(datamodule.hparams)
            datamodule.on_save_checkpoint(checkpoint)
        trainer.emit(events.on_save_checkpoint, checkpoint=checkpoint)
    return checkpoint


def save_atomically(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename: a reader sees old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint without executing pickled code (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist. Check the path, or pass ckpt_path=None.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise RuntimeError(
            f"Checkpoint {str(path)!r} could not be read safely ({type(error).__name__}: {error}). It may be "
            "truncated, corrupted, or hold objects that are not plain tensors and containers."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise RuntimeError(f"{str(path)!r} is not a training checkpoint: it has no 'state_dict'.")
    return checkpoint


def restore(trainer: Any, checkpoint: dict[str, Any]) -> None:
    """Put a run back where ``checkpoint`` left it: weights, optimizers, schedulers, progress, callbacks."""
    module = trainer.lightning_module
    module.on_load_checkpoint(checkpoint)
    trainer.emit(events.on_load_checkpoint, checkpoint=checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    for optimizer, state in zip(trainer.optimizers, checkpoint.get("optimizer_states", [])):
        optimizer.load_state_dict(state)
    for config, state in zip(trainer.lr_scheduler_configs, checkpoint.get("lr_schedulers", [])):
        config.scheduler.load_state_dict(state)
    trainer.strategy.precision.load_state_dict(checkpoint.get("precision", {}))
    states = checkpoint.get("callbacks", {})
    for callback in trainer.callbacks:
        if callback.state_key in states:
            callback.load_state_dict(states[callback.state_key])
    datamodule = trainer.datamodule
    if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
        datamodule.on_load_checkpoint(checkpoint)
    saved = checkpoint.get("progress")
    if saved is not None:
        known = {field.name for field in dataclasses.fields(trainer.progress)}
        for name, value in saved.items():
            if name in known:
                setattr(trainer.progress, name, value)
    else:  # a Lightning checkpoint: it was saved at the end of epoch `epoch`
        trainer.progress.epoch = checkpoint.get("epoch", 0) + 1
        trainer.progress.global_step = checkpoint.get("global_step", 0)


class ModelCheckpoint(Callback):
    """Save the run at the end of every ``every_n_epochs``-th training epoch, keeping the latest file."""

    is_monitor = True  # hears on_train_epoch_end after the module, so it sees what the module logged there

    def __init__(self, dirpath: str | os.PathLike | None = None, every_n_epochs: int = 1) -> None:
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.every_n_epochs = every_n_epochs
        self.last_model_path = ""
        self.best_model_path = ""

    @property
    def state_key(self) -> str:
        return self._generate_state_key(every_n_epochs=self.every_n_epochs)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        path = self.dirpath / f"epoch={trainer.current_epoch}-step={trainer.global_step}.ckpt"
        trainer.save_checkpoint(path)
        previous, self.last_model_path = self.last_model_path, str(path)
        self.best_model_path = self.last_model_path
        # The older file goes only once the new one is complete on disk.
        if previous and previous != self.last_model_path and trainer.is_global_zero:
            Path(previous).unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": str(self.dirpath), "last_model_path": self.last_model_path,
                "best_model_path": self.best_model_path}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_model_path = state_dict.get("last_model_path", "")
        self.best_model_path = state_dict.get("best_model_path", "")
