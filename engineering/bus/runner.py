"""The hook runner: who hears each hook of a run, and in which order. Built once when a run starts.

    hooks(event, **payload):
        the callbacks, in list order          over the bus (blinker), with sender=trainer
        the module's own hook                 a direct call; its return value is the answer (-1 ends an epoch)
                                              (class overrides, and hooks set on the instance)
        at on_train_epoch_end only: the monitoring callbacks (Callback.is_monitor), directly, after the module

The bus only notifies; whatever steers the loop is called here directly, in an order written down once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engineering import events
from engineering.bus.callback import (
    Callback, callback_receiver, called_as_lightning_calls, check_arity, instance_hooks, overridden_hooks,
)
from engineering.bus.log_writer import LogWriter, direct_receiver
from engineering.errors import MisconfigurationError
from engineering.events import Event
from research import LightningModule


class HookRunner:
    """Calls the hooks of one run for ``trainer``: callbacks over the bus, the module's hooks directly."""

    def __init__(self, trainer: Any, module: LightningModule) -> None:
        self._trainer = trainer
        self._module = module
        profiler = trainer.profiler
        self._module_hooks: dict[Event, Callable[..., Any]] = {}
        self._without_dataloader_idx: list[tuple[Event, str]] = []  # batch hooks written for one dataloader
        self._several_dataloaders = False  # in the loop running now; hooks set on an instance are told only then
        for event, hook in overridden_hooks(module, LightningModule):
            if not check_arity(event, hook, leading=0):
                self._without_dataloader_idx.append((event, hook.__qualname__))
                hook = _without_dataloader_idx(hook)
            self._module_hooks[event] = profiler.timed(f"[LightningModule]{event.name}", hook)
        for event, hook in instance_hooks(module, LightningModule, leading=0):
            self._module_hooks[event] = profiler.timed(f"[LightningModule]{event.name}", called_as_lightning_calls(
                event, hook, self._reads_several_dataloaders, callback=False))
        self._monitors: list[Callable[..., Any]] = []
        self._reads: dict[tuple[Event, str], tuple[int, bool]] = {}
        self._connections: list[tuple[Event, Callable[..., Any]]] = []
        for callback in trainer.callbacks:
            for event, receiver, is_monitor in self._callback_receivers(callback):
                receiver = profiler.timed(f"[Callback]{type(callback).__qualname__}.{event.name}", receiver)
                if is_monitor and event is events.on_train_epoch_end:
                    self._monitors.append(receiver)
                else:
                    self._connections.append((event, receiver))
        self.log_writer = LogWriter()  # file loggers write on its thread, in the order the run logs
        for logger in trainer.loggers:
            deliver = self.log_writer.receiver if logger.writes_in_background else direct_receiver
            self._connections.append((events.log_metrics, deliver(logger.log_metrics)))
            self._connections.append((events.log_hyperparams, deliver(logger.log_hyperparams)))
        for event, receiver in self._connections:
            event.connect(receiver, sender=trainer, weak=False)

    def _callback_receivers(self, callback: Callback) -> list[tuple[Event, Callable[..., Any], bool]]:
        """The receivers of ``callback``'s hooks: those its class overrides, then those set on the instance (all
        of a mock's, which is never a monitor)."""
        receivers = []
        for event, hook in overridden_hooks(callback, Callback):
            if callback.listens_to(event.name):
                if not check_arity(event, hook, leading=2):
                    self._without_dataloader_idx.append((event, hook.__qualname__))
                receivers.append((event, callback_receiver(event, hook), callback.is_monitor))
        for event, hook in instance_hooks(callback, Callback, leading=2):
            receiver = called_as_lightning_calls(event, hook, self._reads_several_dataloaders, callback=True)
            receivers.append((event, receiver, getattr(type(callback), "is_monitor", False)))
        return receivers

    def _reads_several_dataloaders(self) -> bool:
        return self._several_dataloaders

    def heard(self, event: Event) -> bool:
        """Whether anyone hears ``event``: an event nobody hears costs its caller not even a call."""
        return bool(event.receivers) or event in self._module_hooks

    def reads(self, event: Event, name: str) -> bool:
        """Whether a hook of ``event`` may read its payload entry ``name``; the caller builds the entry only then.
        A callback hook marked with ``ignores(name)`` does not read it; the module's own hook always may."""
        known = self._reads.get((event, name))  # asked once a batch: the answer stands until a receiver comes or goes
        if known is None or known[0] != event.changes:
            reads = event in self._module_hooks or name not in event.unread_by_receivers_of(self._trainer)
            known = self._reads[event, name] = (event.changes, reads)
        return known[1]

    def __call__(self, event: Event, **payload: Any) -> Any:
        """Run ``event``'s hooks in Lightning's order; return what the module's hook returned (None without one)."""
        trainer = self._trainer
        results = trainer.results
        # self.log inside a hook needs to know which hook it is in; a hook may itself run another.
        outer, results.hook = results.hook, event.name
        try:
            if event.receivers:
                event.notify(trainer, {"pl_module": self._module, **payload})
            module_hook = self._module_hooks.get(event)
            answer = module_hook(*payload.values()) if module_hook is not None else None
            if event is events.on_train_epoch_end:
                for monitor in self._monitors:
                    monitor(trainer, pl_module=self._module)
            return answer
        finally:
            results.hook = outer

    def check_dataloader_idx(self, batch_events: Iterable[Event], dataloaders: int) -> None:
        """With several dataloaders every batch hook must take ``dataloader_idx``: refuse the run before it starts."""
        self._several_dataloaders = dataloaders > 1
        if dataloaders < 2:
            return
        lacking = [name for event, name in self._without_dataloader_idx if event in set(batch_events)]
        if lacking:
            raise MisconfigurationError(
                f"{', '.join(lacking)} cannot receive dataloader_idx, but this loop reads {dataloaders} dataloaders. "
                "Add a `dataloader_idx: int = 0` parameter to it."
            )

    def disconnect(self) -> None:
        """Leave the bus as the run found it; called in the run's ``finally``."""
        self.log_writer.close()
        for event, receiver in self._connections:
            # From every sender: blinker forgets a receiver only when disconnected from all of them.
            event.disconnect(receiver)
        self._connections.clear()
        self._monitors.clear()


def _without_dataloader_idx(hook: Callable[..., Any]) -> Callable[..., Any]:
    def call(*payload: Any) -> Any:
        return hook(*payload[:-1])

    call.__qualname__ = hook.__qualname__
    return call
