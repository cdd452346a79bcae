"""Where ModelCheckpoint's decisions become files: on the training thread, or on a background writer.

Synchronous (the default, as Lightning): each file is built, serialized, checksummed, fsynced and renamed
before training goes on.

Asynchronous (``ModelCheckpoint(async_save=True)``): the training thread only builds the checkpoint at the
step boundary and copies every tensor in it to CPU memory, a snapshot that later steps cannot change. One
background thread per callback then writes the files, the symlinks and the deletions of replaced files, in
the order they were decided, each file still written atomically. So:

- at most one batch of writes is in flight: the next request waits for it (the wait is the stall);
- a write error is raised on the training thread at the next checkpoint or at the end of the fit;
- ``fit`` returns, and ``on_exception`` finishes, only once the last file is on disk; the thread is not a
  daemon, so the interpreter does not exit before it either;
- a SIGKILL at any moment leaves only complete, verified files under final names (an unfinished one is
  a hidden temporary file, removed by the next write of that name);
- under DDP, every rank builds its part of the checkpoint, rank 0 copies and writes, and no rank waits for
  the disk.

Loggers hear ``after_save_checkpoint`` on the training thread once the file is on disk.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from engineering.checkpointing.checkpoint import build_checkpoint
from research.checkpoint_io import link_atomically, save_atomically
from research.nested import apply_to_collection


class CheckpointWriter:
    """Carries out ("save" | "link" | "remove", path, link target) requests for one ModelCheckpoint."""

    def __init__(self, async_save: bool) -> None:
        self.async_save = async_save
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None
        self._saved_in_flight = 0  # files the write in flight will have saved, for after_save_checkpoint
        # CPU memory the snapshots are copied into, one list of tensors per file of a batch of writes, kept from one
        # checkpoint to the next: copying into memory already touched is several times faster than into new pages.
        self._buffers: list[list[torch.Tensor]] = []

    def write(self, trainer: Any, requests: list[tuple[str, str, str]], weights_only: bool, callback: Any) -> None:
        """Write ``requests`` now, or hand them to the background writer (after the previous batch is done)."""
        self.wait(trainer, callback)
        if not requests:
            return
        if not self.async_save:
            for action, path, target in requests:
                if action == "save":
                    trainer.save_checkpoint(path, weights_only)
                    _notify_loggers(trainer, callback, saved=1)
                elif trainer.is_global_zero:
                    _perform(action, path, target)
            return
        planned, slot = [], 0
        for action, path, target in requests:
            snapshot = None
            if action == "save":
                snapshot, slot = self._snapshot(trainer, weights_only, slot), slot + 1
            planned.append((action, path, target, snapshot))
        if trainer.is_global_zero:
            self._saved_in_flight = sum(action == "save" for action, *_ in planned)
            self._in_flight = self._thread().submit(_write_in_order, planned)

    def wait(self, trainer: Any, callback: Any) -> None:
        """Block until the files in flight are on disk; raise the error writing them met, if any."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()
            _notify_loggers(trainer, callback, saved=self._saved_in_flight)

    def close(self) -> None:
        """Let the idle background thread end (it is started again on the next request)."""
        if self._executor is not None and self._in_flight is None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __getstate__(self) -> dict[str, Any]:
        # A callback is copied or pickled between runs (deepcopy, spawn): the thread and the write in flight stay here.
        return {"async_save": self.async_save}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["async_save"])

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tribus-checkpoint-writer")
        return self._executor

    def _snapshot(self, trainer: Any, weights_only: bool, slot: int) -> dict[str, Any] | None:
        """The checkpoint, its tensors copied to CPU memory now (rank 0); every rank builds its share. Called only
        once the previous batch of writes is on disk, so the buffers of ``slot`` are free to reuse."""
        checkpoint = build_checkpoint(trainer, weights_only)
        snapshot = None
        if trainer.is_global_zero:
            while len(self._buffers) <= slot:
                self._buffers.append([])
            earlier, filled = iter(self._buffers[slot]), []
            snapshot = apply_to_collection(
                checkpoint, torch.Tensor, lambda tensor: _copy_into(tensor, next(earlier, None), filled)
            )
            self._buffers[slot] = filled
        trainer.strategy.barrier("save_checkpoint")
        return snapshot


def _copy_into(tensor: torch.Tensor, buffer: torch.Tensor | None, filled: list[torch.Tensor]) -> torch.Tensor:
    """``tensor`` copied to the CPU, into ``buffer`` when it fits: training goes on updating the parameters and the
    optimizer state in place, so even a CPU tensor is copied."""
    fits = (buffer is not None and tensor.layout is torch.strided and buffer.shape == tensor.shape
            and buffer.dtype == tensor.dtype)
    copy = buffer.copy_(tensor.detach()) if fits else tensor.detach().to("cpu", copy=True)
    filled.append(copy)
    return copy


def _write_in_order(planned: list[tuple[str, str, str, dict[str, Any] | None]]) -> None:
    for action, path, target, snapshot in planned:
        if action == "save":
            save_atomically(snapshot, path)  # tensors are on the CPU by now, so plain torch.save fits any strategy
        else:
            _perform(action, path, target)


def _perform(action: str, path: str, target: str) -> None:
    if action == "link":
        link_atomically(target, path)
    elif action == "remove":
        Path(path).unlink(missing_ok=True)


def _notify_loggers(trainer: Any, callback: Any, saved: int) -> None:
    if trainer.is_global_zero:
        for _ in range(saved):
            for logger in trainer.loggers:
                logger.after_save_checkpoint(callback)
