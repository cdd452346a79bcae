"""Which subscribers a Trainer has: the user's callbacks and loggers, the discovered defaults, the module's own.

``engineering.bus.runner.HookRunner`` connects them to the bus when a run starts and disconnects them in
its ``finally``, so nothing on the bus outlives a run or keeps a Trainer alive.
"""

from __future__ import annotations

from typing import Any

from engineering.bus.discovery import discover
from engineering.bus.callback import Callback, overrides
from engineering.loggers import Logger
from engineering.config import as_list
from engineering.errors import MisconfigurationError
from engineering.checkpointing.model_checkpoint import ModelCheckpoint
from engineering.checkpointing.on_exception import OnExceptionCheckpoint
from research import LightningModule


def assemble(trainer: Any, callbacks: Any, logger: Any) -> tuple[list[Callback], list[Logger]]:
    """The Trainer's callbacks and loggers: the user's, a default ModelCheckpoint when checkpointing is on and
    none was given, and the discovered defaults (not with barebones=True), in Lightning's order."""
    trainer.callbacks = as_list(callbacks, "callbacks", Callback)
    trainer.loggers = [] if logger in (None, True, False) else as_list(logger, "logger", Logger)
    if trainer.enable_checkpointing and not any(isinstance(c, ModelCheckpoint) for c in trainer.callbacks):
        trainer.callbacks.append(ModelCheckpoint())
    if not trainer.barebones:
        attach_discovered(trainer, keep_loggers=logger in (None, True))
    order_callbacks(trainer.callbacks)
    check_state_keys(trainer.callbacks)
    return trainer.callbacks, trainer.loggers


def check_state_keys(callbacks: list[Callback]) -> None:
    """Two callbacks with state under one ``state_key`` would overwrite each other in a checkpoint: refused, as
    Lightning does, in its words."""
    seen: set[str] = set()
    for callback in callbacks:
        if not overrides(type(callback), Callback, "state_dict"):
            continue
        if callback.state_key in seen:
            name = type(callback).__name__
            raise RuntimeError(
                f"Found more than one stateful callback of type `{name}`. In the current configuration, this "
                "callback does not support being saved alongside other instances of the same type. Please consult "
                f"the documentation of `{name}` regarding valid settings for the callback state to be checkpointable."
                f" HINT: The `callback.state_key` must be unique among all callbacks in the Trainer. Two have "
                f"{callback.state_key!r}: give them different arguments (for ModelCheckpoint: monitor, mode or an "
                "every_n_* interval), or keep one."
            )
        seen.add(callback.state_key)


def attach_discovered(trainer: Any, keep_loggers: bool) -> None:
    """Add what the discovery door's factories build: callbacks always, loggers when the user chose none."""
    for subscriber in discover(trainer):
        if isinstance(subscriber, Logger):
            if keep_loggers:
                trainer.loggers.append(subscriber)
        elif isinstance(subscriber, Callback):
            trainer.callbacks.append(subscriber)
        else:
            raise MisconfigurationError(
                f"A discovered subscriber factory returned {type(subscriber).__name__}; "
                "it must return a Callback, a Logger or None."
            )


def order_callbacks(callbacks: list[Callback]) -> None:
    """User callbacks first, then discovered ones, checkpointing last (as Lightning orders them)."""
    callbacks.sort(key=lambda callback: isinstance(callback, (ModelCheckpoint, OnExceptionCheckpoint)))


def add_module_callbacks(trainer: Any, model: LightningModule) -> None:
    """Add what ``model.configure_callbacks()`` returns; they replace the Trainer's of the same type, as in Lightning."""
    extra = model.configure_callbacks()
    extra = [extra] if isinstance(extra, Callback) else list(extra or [])
    if extra:
        replaced = {type(callback) for callback in extra}
        trainer.callbacks = [c for c in trainer.callbacks if type(c) not in replaced] + extra
        order_callbacks(trainer.callbacks)
        check_state_keys(trainer.callbacks)
