"""Checkpoints of a run: what is saved, putting a run back, and preemption (which file ``ckpt_path`` means is
``checkpointing/ckpt_path.py``).

Keys follow Lightning (``epoch``, ``global_step``, ``state_dict``, ``optimizer_states``, ``lr_schedulers``,
``callbacks``, ``hparams_name``/``hyper_parameters``, the datamodule's and the precision's state under their
class names, ``loops`` and ``pytorch-lightning_version``) so a Lightning checkpoint loads here and a tribus one
in Lightning; tribus adds ``format_version``, ``progress`` (the whole ``loop.state.Progress``), ``rng_states``,
``epoch_rng_states``, ``train_loader_passes`` (several training loaders), ``train_dataloader_state`` and, in a
preemption checkpoint, ``preempted_run``. The file format (atomic write, checksum, safe load) is
``research.checkpoint_io``; ModelCheckpoint is in ``checkpointing/model_checkpoint.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import random
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from engineering import events
from engineering.data.batches import stateful_part
from engineering.errors import MisconfigurationError
from engineering.checkpointing.ckpt_path import (
    HPC_NAME, RUN_KEY, hpc_checkpoints, resolve_checkpoint_path, run_identity, slurm_job_id,
)
from engineering.checkpointing.lightning_format import lightning_keys, progress_from_lightning
from engineering.strategies.environment import under_slurm
from research.checkpoint_io import CheckpointError, load_checkpoint, save_atomically

__all__ = [
    "CheckpointError", "FORMAT_VERSION", "Preempted", "build_checkpoint", "capture_rng_states", "load_checkpoint",
    "preemption_signals", "resolve_checkpoint_path", "restore", "restore_rng_states", "restore_train_loader_state",
    "save_atomically", "stop_for_preemption", "write_requested_checkpoints",
]

FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# What a checkpoint holds
# ---------------------------------------------------------------------------------------------
def build_checkpoint(trainer: Any, weights_only: bool = False) -> dict[str, Any]:
    """Everything needed to resume ``trainer``'s run exactly (or, with ``weights_only``, to rebuild the model)."""
    module = trainer.lightning_module
    datamodule = trainer.datamodule
    progress = trainer.progress
    checkpoint: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "tribus_version": _tribus_version(),
        # Lightning's meaning: the epoch the checkpoint was taken in. Between epochs that is the one just ended.
        "epoch": progress.epoch - 1 if progress.batch_idx == 0 and progress.epoch > 0 else progress.epoch,
        "global_step": progress.global_step,
        "state_dict": trainer.strategy.module_state_dict(module),
        "progress": dataclasses.asdict(progress),
        # Lightning's own record of where the run is, so that Lightning can resume from this file too.
        **lightning_keys(progress, module.automatic_optimization, trainer.accumulate_grad_batches,
                         trainer.num_training_batches),
    }
    for owner in (module, datamodule):
        if owner is not None and owner.hparams:
            checkpoint[owner.CHECKPOINT_HYPER_PARAMS_NAME] = "kwargs"
            checkpoint[owner.CHECKPOINT_HYPER_PARAMS_KEY] = dict(owner.hparams)
    if datamodule is not None:
        state = datamodule.state_dict()
        if state:
            checkpoint[type(datamodule).__qualname__] = state
    if weights_only:
        module.on_save_checkpoint(checkpoint)
        return checkpoint

    states = ((callback.state_key, callback.state_dict()) for callback in trainer.callbacks)
    checkpoint["callbacks"] = {key: state for key, state in states if state}  # stateless ones left out, as Lightning
    checkpoint["optimizer_states"] = [trainer.strategy.optimizer_state_dict(optimizer) for optimizer in trainer.optimizers]
    checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
    precision = trainer.strategy.precision
    if precision.state_dict():
        checkpoint[type(precision).__qualname__] = precision.state_dict()
    checkpoint["rng_states"] = capture_rng_states(trainer.train_dataloader)
    if progress.batch_idx:  # mid-epoch: the epoch's metric aggregates so far, and where its order came from
        checkpoint["epoch_metrics"] = trainer.results.state_dict()
        if trainer.loaders.epoch_rng_states is not None:
            checkpoint["epoch_rng_states"] = trainer.loaders.epoch_rng_states
        if trainer.loaders.train_streams is not None:  # several loaders: where each one's pass is
            checkpoint["train_loader_passes"] = trainer.loaders.train_streams.records()
    stateful = stateful_part(trainer.train_dataloader)
    if stateful is not None:
        checkpoint["train_dataloader_state"] = stateful.state_dict()
    if datamodule is not None:
        datamodule.on_save_checkpoint(checkpoint)
    trainer.emit(events.on_save_checkpoint, checkpoint=checkpoint)  # the callbacks, then the module
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def restore(trainer: Any, checkpoint: dict[str, Any]) -> None:
    """Put a run back where ``checkpoint`` left it, in Lightning's order: datamodule, module, callbacks,
    precision, optimizers, schedulers, progress. Random states are the loop's business (``run_fit``)."""
    module = trainer.lightning_module
    datamodule = trainer.datamodule
    written = checkpoint.get("format_version", FORMAT_VERSION)
    if isinstance(written, int) and written > FORMAT_VERSION:
        raise CheckpointError(
            f"This checkpoint has format_version {written}, written by tribus "
            f"{checkpoint.get('tribus_version', 'of a newer release')}; this tribus ({_tribus_version()}) reads "
            f"format {FORMAT_VERSION} and older. Upgrade tribus to resume from it."
        )
    if "optimizer_states" not in checkpoint:
        raise CheckpointError(
            "This checkpoint holds only weights (saved with weights_only=True / save_weights_only=True), so "
            "training cannot resume from it. Load it with Model.load_from_checkpoint(path) and call fit without "
            "ckpt_path, or resume from a full checkpoint."
        )
    if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    trainer.emit(events.on_load_checkpoint, checkpoint=checkpoint)  # the callbacks, then the module
    module.on_load_checkpoint(checkpoint)
    if datamodule is not None:
        datamodule.on_load_checkpoint(checkpoint)
    trainer.strategy.load_module_state_dict(module, checkpoint["state_dict"])

    states = checkpoint.get("callbacks", {})
    for callback in trainer.callbacks:
        if callback.state_key in states:
            callback.load_state_dict(states[callback.state_key])
    precision = trainer.strategy.precision
    if type(precision).__qualname__ in checkpoint:
        precision.load_state_dict(checkpoint[type(precision).__qualname__])
    _restore_each("optimizer", trainer.optimizers, checkpoint["optimizer_states"], trainer.strategy.load_optimizer_state_dict)
    schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
    _restore_each("learning-rate scheduler", schedulers, checkpoint.get("lr_schedulers", []),
                  lambda scheduler, state: scheduler.load_state_dict(state))
    if "epoch_metrics" in checkpoint:
        trainer.results.load_state_dict(checkpoint["epoch_metrics"])
    if "progress" in checkpoint:
        known = {field.name for field in dataclasses.fields(trainer.progress)} - {"should_stop", "stop_reason"}
        for name, value in checkpoint["progress"].items():
            if name in known:  # a stop request belonged to the run that saved; this one decides its own
                setattr(trainer.progress, name, value)
    else:
        progress_from_lightning(trainer.progress, checkpoint)
    if trainer.max_epochs != -1 and trainer.progress.epoch > trainer.max_epochs:
        raise MisconfigurationError(
            f"The checkpoint was saved in epoch {trainer.progress.epoch}, beyond Trainer(max_epochs="
            f"{trainer.max_epochs}). Raise max_epochs to train further."
        )


def restore_train_loader_state(trainer: Any, checkpoint: dict[str, Any]) -> None:
    """A loader (or sampler) that keeps its own place in the data gets back the place the checkpoint recorded."""
    stateful = stateful_part(trainer.train_dataloader)
    if stateful is not None and "train_dataloader_state" in checkpoint:
        stateful.load_state_dict(checkpoint["train_dataloader_state"])


def _restore_each(kind: str, objects: list[Any], states: list[Any], load: Callable[[Any, Any], None]) -> None:
    if len(objects) != len(states):
        raise CheckpointError(
            f"The checkpoint has {len(states)} {kind} state(s), but configure_optimizers returned {len(objects)}. "
            "Resume with the configure_optimizers that wrote it."
        )
    for index, (obj, state) in enumerate(zip(objects, states)):
        try:
            load(obj, state)
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(
                f"The checkpoint's {kind} state #{index} does not fit {type(obj).__name__}: {error}. Resume with the "
                "model and configure_optimizers that wrote it."
            ) from error


# ---------------------------------------------------------------------------------------------
# Random number generators: saved with every checkpoint, put back by the loop
# ---------------------------------------------------------------------------------------------
def capture_rng_states(loader: Any = None) -> dict[str, Any]:
    """Python's, numpy's (when installed), torch's CPU and, once CUDA is in use, every GPU's generator state; with
    ``loader``, also the states of the generators its DataLoader and sampler own (they decide a shuffled order)."""
    states: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    owned = loader_generators(loader)
    if owned:
        states["loader_generators"] = [generator.get_state() for generator in owned]
    numpy = _numpy()
    if numpy is not None:
        name, key, position, has_gauss, cached = numpy.random.get_state()
        # As a tensor and plain numbers, so the checkpoint loads without allow-listing numpy types.
        states["numpy"] = (name, torch.from_numpy(key.astype("int64")), position, has_gauss, cached)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], loader: Any = None) -> None:
    for generator, state in zip(loader_generators(loader), states.get("loader_generators", [])):
        generator.set_state(state)
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    numpy = _numpy()
    if numpy is not None and "numpy" in states:
        name, key, position, has_gauss, cached = states["numpy"]
        numpy.random.set_state((name, key.numpy().astype("uint32"), position, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


@functools.cache  # reading the installed metadata costs about a millisecond
def _tribus_version() -> str:
    try:
        return importlib.metadata.version("tribus")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The torch generators a DataLoader and its sampler own, each once."""
    found: list[torch.Generator] = []
    for owner in (loader, getattr(loader, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not seen for seen in found):
            found.append(generator)
    return found


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def write_requested_checkpoints(trainer: Any, checkpointers: list[Any]) -> None:
    """Write what the ModelCheckpoint callbacks decided during the batch or epoch that just completed."""
    for callback in checkpointers:
        callback.write_requested(trainer)


# ---------------------------------------------------------------------------------------------
# Preemption: a signal only sets a flag; the loop saves after the step in progress, then exits
# ---------------------------------------------------------------------------------------------
class Preempted(SystemExit):
    """Raised once the preemption checkpoint is saved: teardown runs, and the process exits with status 0."""

    def __init__(self) -> None:
        super().__init__(0)


@contextlib.contextmanager
def preemption_signals(trainer: Any) -> Iterator[None]:
    """While fit runs, SIGTERM, SIGINT (Ctrl-C) and, under SLURM, SIGUSR1 record themselves in
    ``trainer.received_signal``; the loop answers at the next step or validation batch. A second Ctrl-C does
    not wait: it raises KeyboardInterrupt at once.

    The previous handlers come back when fit ends, however it ends. Only the main thread may set handlers;
    elsewhere, signals keep their usual effect.
    """
    trainer.received_signal = None
    wanted = [signal.SIGTERM, signal.SIGINT]
    if under_slurm() and hasattr(signal, "SIGUSR1"):
        wanted.append(signal.SIGUSR1)
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def record(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and trainer.received_signal == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.received_signal = signum  # nothing else here: the loop acts at the end of the step

    previous = {signum: signal.getsignal(signum) for signum in wanted}
    try:
        for signum in wanted:
            signal.signal(signum, record)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def stop_for_preemption(trainer: Any) -> None:
    """Save ``hpc_ckpt_<n>.ckpt`` in default_root_dir, naming this run in it (so that only this run resumes from
    it by itself), requeue the SLURM job after SIGUSR1, and exit (status 0)."""
    signum = trainer.received_signal or signal.SIGTERM  # another rank may be the one that was signalled
    directory = Path(trainer.default_root_dir)
    numbers = [int(HPC_NAME.match(path.name).group(1)) for path in hpc_checkpoints(trainer)]
    path = directory / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"
    checkpoint = build_checkpoint(trainer)
    checkpoint[RUN_KEY] = run_identity(trainer)
    if trainer.is_global_zero:
        save_atomically(checkpoint, path, trainer.strategy.write_checkpoint)
    trainer.strategy.barrier("save_checkpoint")
    trainer.progress.stop_reason = "preempted"
    message = f"{signal.Signals(signum).name} received: saved {path} after the step in progress."
    if signum == getattr(signal, "SIGUSR1", None) and under_slurm() and trainer.is_global_zero:
        message += " " + _requeue_slurm_job()
    print(message + " Resume with trainer.fit(..., ckpt_path=\"last\").", flush=True)
    raise Preempted()


def _requeue_slurm_job() -> str:
    job = slurm_job_id()
    if not re.fullmatch(r"[0-9_]+", job):
        return f"Not requeued: SLURM_JOB_ID={job!r} is not a job id."
    try:
        status = subprocess.call(["scontrol", "requeue", job])
    except FileNotFoundError:
        return "Not requeued: scontrol is not on PATH."
    return f"Requeued SLURM job {job}." if status == 0 else f"Requeuing SLURM job {job} failed (status {status})."
