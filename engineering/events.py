"""The event bus: every signal the Trainer sends, in the order the loops send them.

    fit(model)
        setup(stage="fit")                  datamodule.setup runs just before
        on_fit_start
        on_sanity_check_start               only with validation data and num_sanity_val_steps != 0
            <validation loop, below>
        on_sanity_check_end
        on_train_start
        for each epoch:
            on_train_epoch_start
            for each batch:
                on_train_batch_start        a module hook returning -1 ends the epoch here
                    training_step               (a direct call, not an event)
                    on_before_zero_grad     first batch of an accumulation window
                    on_before_backward
                    on_after_backward
                    on_before_optimizer_step    last batch of an accumulation window
                on_train_batch_end
                log_metrics                 every log_every_n_steps optimizer steps
                <validation loop, when val_check_interval says so>
            on_train_epoch_end          module hook sits before ModelCheckpoint and EarlyStopping
            log_metrics
        on_train_end
        on_fit_end
        teardown(stage="fit")

    validation loop (test and predict loops are the same with their own names)
        on_validation_start
        on_validation_epoch_start
        for each dataloader, batch:
            on_validation_batch_start
                validation_step         (a direct call)
            on_validation_batch_end
        on_validation_epoch_end
        log_metrics
        on_validation_end

    at any time: on_exception (a hook raised; teardown follows, then the error propagates),
    on_save_checkpoint / on_load_checkpoint (while a checkpoint is written or read),
    log_hyperparams (once, when a run starts).

Every signal is sent by the Trainer, with ``pl_module`` and the payload as keyword arguments in
Lightning's positional order, so ``def on_train_batch_end(trainer, pl_module, outputs, batch,
batch_idx)`` is a valid receiver. Connect with ``sender=trainer`` to hear one Trainer only.

Receivers are called in the order they were connected; blinker leaves that order undefined, so
``Event`` keeps its receiver sets insertion-ordered and caches each sender's receivers.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterable, Iterator, MutableSet
from typing import Any

from blinker import NamedSignal, Namespace


class _OrderedSet(MutableSet):
    """A set that iterates in insertion order; blinker's routing tables are built from it."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items = dict.fromkeys(items)

    def __contains__(self, item: Any) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Any) -> None:
        self._items[item] = None

    def discard(self, item: Any) -> None:
        self._items.pop(item, None)

    def copy(self) -> _OrderedSet:
        return _OrderedSet(self._items)


class Event(NamedSignal):
    """A blinker signal with ordered receivers and a per-sender receiver cache for cheap sends."""

    set_class = _OrderedSet

    def __init__(self, name: str, doc: str | None = None) -> None:
        super().__init__(name, doc)
        self._routes: dict[int, tuple[weakref.ref, tuple[Callable[..., Any], ...]]] = {}

    def connect(self, receiver: Any, sender: Any = None, weak: bool = True) -> Any:
        self._routes.clear()
        if sender is None:
            return super().connect(receiver, weak=weak)
        return super().connect(receiver, sender=sender, weak=weak)

    def disconnect(self, receiver: Any, sender: Any = None) -> None:
        self._routes.clear()
        if sender is None:
            super().disconnect(receiver)
        else:
            super().disconnect(receiver, sender=sender)

    def send(self, sender: Any = None, /, **payload: Any) -> list[tuple[Callable[..., Any], Any]]:
        """Call the receivers of ``sender`` in connection order; return ``(receiver, result)`` pairs."""
        route = self._routes.get(id(sender))
        if route is None or route[0]() is not sender:
            route = self._route(sender)
        responses = []
        for receiver in route[1]:  # a loop, not a comprehension: one frame fewer per send
            responses.append((receiver, receiver(sender, **payload)))
        return responses

    def _route(self, sender: Any) -> tuple[weakref.ref, tuple[Callable[..., Any], ...]]:
        # Resolving weak references once per connect, not once per send, is what makes sends cheap.
        # The cached tuple holds strong references only until the next connect or disconnect,
        # which every Trainer run does in its `finally`.
        receivers = tuple(self.receivers_for(sender))
        try:
            route = (weakref.ref(sender), receivers)
        except TypeError:  # None, ints, strings: valid blinker senders that cannot be cached by identity
            return (lambda: sender, receivers)
        self._routes[id(sender)] = route
        return route


class _EventNamespace(Namespace):
    def signal(self, name: str, doc: str | None = None) -> Event:
        if name not in self:
            self[name] = Event(name, doc)
        return self[name]


bus = _EventNamespace()

setup = bus.signal("setup", "a run starts, after datamodule.setup; stage")
teardown = bus.signal("teardown", "a run ends, also after an error; stage")
on_fit_start = bus.signal("on_fit_start", "fit begins, optimizers are ready")
on_fit_end = bus.signal("on_fit_end", "fit finished")
on_sanity_check_start = bus.signal("on_sanity_check_start", "a short validation before training")
on_sanity_check_end = bus.signal("on_sanity_check_end", "the sanity check finished; its metrics are dropped")
on_train_start = bus.signal("on_train_start", "training begins")
on_train_end = bus.signal("on_train_end", "training finished")
on_train_epoch_start = bus.signal("on_train_epoch_start", "a training epoch begins")
on_train_epoch_end = bus.signal("on_train_epoch_end", "a training epoch finished (after its validation)")
on_train_batch_start = bus.signal("on_train_batch_start", "before training_step; batch, batch_idx")
on_train_batch_end = bus.signal(
    "on_train_batch_end", "after the optimizer step; outputs (training_step's return), batch, batch_idx"
)
on_before_zero_grad = bus.signal("on_before_zero_grad", "before optimizer_zero_grad; optimizer")
on_before_backward = bus.signal("on_before_backward", "before backward; loss (already divided for accumulation)")
on_after_backward = bus.signal("on_after_backward", "after backward, gradients are populated")
on_before_optimizer_step = bus.signal(
    "on_before_optimizer_step", "after backward, before clipping and the step; optimizer"
)
on_validation_start = bus.signal("on_validation_start", "validation begins, module in eval mode")
on_validation_end = bus.signal("on_validation_end", "validation finished")
on_validation_epoch_start = bus.signal("on_validation_epoch_start", "a validation pass begins")
on_validation_epoch_end = bus.signal("on_validation_epoch_end", "a validation pass finished, epoch metrics are ready")
on_validation_batch_start = bus.signal(
    "on_validation_batch_start", "before validation_step; batch, batch_idx, dataloader_idx"
)
on_validation_batch_end = bus.signal(
    "on_validation_batch_end", "after validation_step; outputs, batch, batch_idx, dataloader_idx"
)
on_test_start = bus.signal("on_test_start", "testing begins, module in eval mode")
on_test_end = bus.signal("on_test_end", "testing finished")
on_test_epoch_start = bus.signal("on_test_epoch_start", "a test pass begins")
on_test_epoch_end = bus.signal("on_test_epoch_end", "a test pass finished, epoch metrics are ready")
on_test_batch_start = bus.signal("on_test_batch_start", "before test_step; batch, batch_idx, dataloader_idx")
on_test_batch_end = bus.signal("on_test_batch_end", "after test_step; outputs, batch, batch_idx, dataloader_idx")
on_predict_start = bus.signal("on_predict_start", "prediction begins, module in eval mode")
on_predict_end = bus.signal("on_predict_end", "prediction finished")
on_predict_epoch_start = bus.signal("on_predict_epoch_start", "a prediction pass begins")
on_predict_epoch_end = bus.signal("on_predict_epoch_end", "a prediction pass finished")
on_predict_batch_start = bus.signal(
    "on_predict_batch_start", "before predict_step; batch, batch_idx, dataloader_idx"
)
on_predict_batch_end = bus.signal(
    "on_predict_batch_end", "after predict_step; outputs, batch, batch_idx, dataloader_idx"
)
on_exception = bus.signal("on_exception", "a hook or step raised; exception. Teardown follows, then it re-raises")
on_save_checkpoint = bus.signal("on_save_checkpoint", "a checkpoint dict is being built; checkpoint (mutable)")
on_load_checkpoint = bus.signal("on_load_checkpoint", "a checkpoint dict was read; checkpoint")
log_metrics = bus.signal(
    "log_metrics", "metrics for loggers, as plain floats, on global rank 0; metrics, step"
)
log_hyperparams = bus.signal("log_hyperparams", "hyperparameters for loggers, on global rank 0; params")

#: Hooks a ``Callback`` (or a LightningModule) may define, each subscribed to the event of its name.
HOOK_EVENTS: dict[str, Event] = {name: event for name, event in bus.items() if name.startswith("on_")}
HOOK_EVENTS.update(setup=setup, teardown=teardown)


class Callback:
    """Override any hook named in ``HOOK_EVENTS``; only overridden hooks are subscribed.

    Every hook gets Lightning's arguments in Lightning's order, ``hook(trainer, pl_module, *payload)``, so a
    Lightning 2.x callback runs unchanged.
    """

    def listens_to(self, hook: str) -> bool:
        """Whether to subscribe this overridden ``hook`` for the run about to start (always, unless a subclass
        knows it has nothing to do there: a per-batch hook left unsubscribed costs nothing per batch)."""
        return True

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint; include arguments that tell instances apart."""
        return type(self).__qualname__

    def _generate_state_key(self, **kwargs: Any) -> str:
        return f"{type(self).__qualname__}{repr(kwargs)}"

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None: ...
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None: ...
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_fit_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_sanity_check_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None: ...
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None: ...
    def on_before_zero_grad(self, trainer: Any, pl_module: Any, optimizer: Any) -> None: ...
    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None: ...
    def on_after_backward(self, trainer: Any, pl_module: Any) -> None: ...
    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None: ...
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_validation_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None: ...
    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None: ...
    def on_test_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_test_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_test_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None: ...
    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None: ...
    def on_predict_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_predict_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_predict_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None: ...
    def on_predict_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None: ...
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None: ...
    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None: ...
    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None: ...


def overridden_hooks(obj: Any, base: type) -> list[tuple[Event, Callable[..., Any]]]:
    """The bound hook methods of ``obj`` that override ``base``'s no-op, with their events."""
    hooks = []
    for name, event in HOOK_EVENTS.items():
        defined = getattr(type(obj), name, None)
        if defined is not None and defined is not getattr(base, name, None):
            hooks.append((event, getattr(obj, name)))
    return hooks


def callback_receiver(event: Event, hook: Callable[..., Any]) -> Callable[..., Any]:
    """Adapt a Lightning-style callback hook ``hook(trainer, pl_module, *payload)`` to a receiver.

    A hook whose parameters have the payload's names (Lightning's: ``pl_module``, ``outputs``, ``batch``, …) is
    its own receiver: blinker passes the payload by name, and no adapter runs in between.
    """
    _check_arity(event, hook, leading=2)
    if _takes_payload_by_name(event, hook):
        return hook

    def receive(trainer: Any, **payload: Any) -> Any:
        return hook(trainer, *payload.values())

    receive.__qualname__ = getattr(hook, "__qualname__", repr(hook))
    return receive


def module_receiver(event: Event, hook: Callable[..., Any]) -> Callable[..., Any]:
    """Adapt a module-style hook ``hook(*payload)`` (no trainer, no module) to a receiver."""
    _check_arity(event, hook, leading=0)

    def receive(trainer: Any, pl_module: Any, **payload: Any) -> Any:
        return hook(*payload.values())

    receive.__qualname__ = getattr(hook, "__qualname__", repr(hook))
    return receive


# Payload names per event, in Lightning's positional order (after trainer and pl_module).
PAYLOADS: dict[str, tuple[str, ...]] = {
    "setup": ("stage",),
    "teardown": ("stage",),
    "on_train_batch_start": ("batch", "batch_idx"),
    "on_train_batch_end": ("outputs", "batch", "batch_idx"),
    "on_before_zero_grad": ("optimizer",),
    "on_before_backward": ("loss",),
    "on_before_optimizer_step": ("optimizer",),
    "on_exception": ("exception",),
    "on_save_checkpoint": ("checkpoint",),
    "on_load_checkpoint": ("checkpoint",),
    "log_metrics": ("metrics", "step"),
    "log_hyperparams": ("params",),
}
for _stage in ("validation", "test", "predict"):
    PAYLOADS[f"on_{_stage}_batch_start"] = ("batch", "batch_idx", "dataloader_idx")
    PAYLOADS[f"on_{_stage}_batch_end"] = ("outputs", "batch", "batch_idx", "dataloader_idx")


def _takes_payload_by_name(event: Event, hook: Callable[..., Any]) -> bool:
    names = ["pl_module", *PAYLOADS.get(event.name, ())]
    parameters = list(inspect.signature(hook).parameters.values())[: len(names) + 1]
    by_name = all(parameter.kind is parameter.POSITIONAL_OR_KEYWORD for parameter in parameters)
    return by_name and [parameter.name for parameter in parameters[1:]] == names


def _check_arity(event: Event, hook: Callable[..., Any], leading: int) -> None:
    """Reject a hook that cannot take the event's arguments now, not when the event first fires."""
    arguments = leading + len(PAYLOADS.get(event.name, ()))
    try:
        inspect.signature(hook).bind(*range(arguments))
    except TypeError as mismatch:
        expected = ["trainer", "pl_module"][:leading] + list(PAYLOADS.get(event.name, ()))
        raise TypeError(
            f"{getattr(hook, '__qualname__', hook)} cannot receive {event.name}({', '.join(expected)}): "
            f"{mismatch}. Give it that signature."
        ) from None
