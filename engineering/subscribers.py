"""Who hears a Trainer: callbacks, the module's hooks and loggers, connected to the bus in Lightning's order.

Receivers are connected when a run starts and disconnected in its ``finally``, so nothing on the bus
outlives a run or keeps a Trainer alive.
"""

from __future__ import annotations

from typing import Any

from engineering import events
from engineering.discovery import discover
from engineering.events import Callback, callback_receiver, module_receiver, overridden_hooks
from engineering.loggers import Logger
from engineering.logging import MisconfigurationError
from engineering.model_checkpoint import ModelCheckpoint, OnExceptionCheckpoint
from research import LightningModule

Connections = list[tuple[events.Event, Any]]


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


def connect(trainer: Any, model: LightningModule) -> Connections:
    """Connect every overridden hook of the callbacks and the module, and the loggers, with ``sender=trainer``."""
    extra = model.configure_callbacks()
    extra = [extra] if isinstance(extra, Callback) else list(extra or [])
    if extra:  # the module's callbacks replace the Trainer's of the same type, as in Lightning
        replaced = {type(callback) for callback in extra}
        trainer.callbacks = [c for c in trainer.callbacks if type(c) not in replaced] + extra
        order_callbacks(trainer.callbacks)
    profiler = trainer.profiler
    module_hooks = overridden_hooks(model, LightningModule)
    callback_hooks = [(c, e, h) for c in trainer.callbacks for e, h in overridden_hooks(c, Callback)
                      if c.listens_to(e.name)]
    epoch_end = events.on_train_epoch_end

    def for_callback(callback: Callback, event: events.Event, hook: Any) -> Any:
        name = f"[Callback]{type(callback).__qualname__}.{event.name}"
        return profiler.timed(name, callback_receiver(event, hook))

    def for_module(event: events.Event, hook: Any) -> Any:
        receiver = profiler.timed(f"[LightningModule]{event.name}", module_receiver(event, hook))
        receiver.is_module_hook = True  # only the module's answer counts, e.g. -1 from on_train_batch_start
        return receiver

    def monitor_at_epoch_end(callback: Callback, event: events.Event) -> bool:
        return event is epoch_end and getattr(callback, "is_monitor", False)

    # Callbacks first, in list order, then the module; except at on_train_epoch_end, where the module
    # comes before monitoring callbacks so that what it logs there can stop training or pick a checkpoint.
    receivers = [(e, for_callback(c, e, h)) for c, e, h in callback_hooks if not monitor_at_epoch_end(c, e)]
    receivers += [(e, for_module(e, h)) for e, h in module_hooks if e is epoch_end]
    receivers += [(e, for_callback(c, e, h)) for c, e, h in callback_hooks if monitor_at_epoch_end(c, e)]
    receivers += [(e, for_module(e, h)) for e, h in module_hooks if e is not epoch_end]
    for logger in trainer.loggers:
        receivers.append((events.log_metrics, module_receiver(events.log_metrics, logger.log_metrics)))
        receivers.append((events.log_hyperparams, module_receiver(events.log_hyperparams, logger.log_hyperparams)))
    for event, receiver in receivers:
        event.connect(receiver, sender=trainer, weak=False)
    return receivers


def disconnect(connections: Connections) -> None:
    for event, receiver in connections:
        # From every sender: blinker forgets a receiver only when disconnected from all of them.
        event.disconnect(receiver)
    connections.clear()
