"""``Callback``, the base of every subscriber, and how its hooks become receivers of the bus.

Its no-op hook methods are generated from the event table in ``engineering/events.py``, so the list of hooks
is written once. Only the hooks a subclass overrides are connected, each checked when it connects; hooks set on
an instance, and every hook of a ``unittest.mock`` mock, are connected too and called exactly as Lightning calls them.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from engineering.events import HOOK_EVENTS, Event


class Callback:
    """Override any hook named in ``engineering.events.HOOK_EVENTS``; only overridden hooks are subscribed.

    Every hook gets Lightning's arguments in Lightning's order, ``hook(trainer, pl_module, *payload)``, so a
    Lightning 2.x callback runs unchanged.
    """

    #: A monitoring callback (early stopping, checkpointing) decides from the epoch's metrics: its
    #: ``on_train_epoch_end`` runs after the module's, so it sees what the module logged there (as in Lightning).
    is_monitor: ClassVar[bool] = False

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


def _no_op_hook(event: Event) -> Callable[..., None]:
    def hook(self: Callback, trainer: Any, pl_module: Any, *payload: Any) -> None:
        return None

    parameters = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  for name in ("self", "trainer", "pl_module", *event.payload)]
    if event.payload[-1:] == ("dataloader_idx",):  # one dataloader: Lightning passes 0
        parameters[-1] = parameters[-1].replace(default=0)
    hook.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    hook.__name__ = event.name
    hook.__qualname__ = f"Callback.{event.name}"
    hook.__doc__ = f"Called when {event.__doc__}."
    return hook


for _event in HOOK_EVENTS.values():
    setattr(Callback, _event.name, _no_op_hook(_event))


@functools.cache
def overrides(subclass: type, base: type, name: str) -> bool:
    """Whether ``subclass`` defines its own ``name`` rather than ``base``'s: the one override check."""
    return getattr(subclass, name, None) is not getattr(base, name, None)


def defines(obj: Any, base: type, name: str) -> bool:
    """Whether ``obj`` has its own ``name``: overridden in its class, or set on the instance. A hook set to None
    on the instance is switched off (``model.validation_step = None`` skips validation, as in Lightning)."""
    own = getattr(obj, "__dict__", {})
    if name in own:
        return own[name] is not None
    return overrides(type(obj), base, name)


def overridden_hooks(obj: Any, base: type) -> list[tuple[Event, Callable[..., Any]]]:
    """The bound hook methods of ``obj`` that override ``base``'s no-op, with their events (hooks set on the
    instance are ``instance_hooks``). A hook ``base`` lacks is not one of its hooks: Lightning never calls a
    module's ``on_sanity_check_start``, for one."""
    cls, own = type(obj), getattr(obj, "__dict__", {})
    return [(event, getattr(obj, name)) for name, event in HOOK_EVENTS.items()
            if name not in own and hasattr(base, name) and hasattr(cls, name) and overrides(cls, base, name)]


def instance_hooks(obj: Any, base: type, leading: int) -> list[tuple[Event, Callable[..., Any]]]:
    """Hooks set on the instance (``callback.on_train_start = fn``) rather than defined by its class, their
    signatures checked as ``check_arity`` checks (``leading`` arguments before the payload); for a
    ``unittest.mock`` mock, every hook, as Lightning calls every hook of every callback."""
    mock = sys.modules.get("unittest.mock")  # not imported: nothing can be a mock
    if mock is not None and isinstance(obj, mock.NonCallableMock):
        return [(event, getattr(obj, name)) for name, event in HOOK_EVENTS.items() if hasattr(base, name)]
    own = getattr(obj, "__dict__", {})
    hooks = [(event, own[name]) for name, event in HOOK_EVENTS.items()
             if own.get(name) is not None and hasattr(base, name)]
    for event, hook in hooks:
        check_arity(event, hook, leading)
    return hooks


def called_as_lightning_calls(event: Event, hook: Callable[..., Any], several_dataloaders: Callable[[], bool],
                              callback: bool) -> Callable[..., Any]:
    """``hook`` called exactly as Lightning calls it, for a hook that takes whatever it is given (a mock records
    it): the payload by position, ``dataloader_idx`` only with several dataloaders, ``stage`` by keyword. A
    callback's receiver takes the bus's ``(trainer, pl_module=, **payload)``; a module's, the payload's values."""
    keyword = "stage" if event.payload == ("stage",) else None
    drops_dataloader_idx = event.payload[-1:] == ("dataloader_idx",)

    def call(*arguments: Any) -> Any:
        if drops_dataloader_idx and not several_dataloaders():
            arguments = arguments[:-1]
        if keyword:
            return hook(*arguments[:-1], **{keyword: arguments[-1]})
        return hook(*arguments)

    def receive(trainer: Any, pl_module: Any, **payload: Any) -> Any:
        return call(trainer, pl_module, *payload.values())

    chosen = receive if callback else call
    chosen.__qualname__ = getattr(hook, "__qualname__", repr(hook))
    return chosen


def callback_receiver(event: Event, hook: Callable[..., Any]) -> Callable[..., Any]:
    """Adapt a Lightning-style callback hook ``hook(trainer, pl_module, *payload)`` to a receiver.

    A hook whose parameters have the payload's names (Lightning's: ``pl_module``, ``outputs``, ``batch``, …) is
    its own receiver: blinker passes the payload by name, and no adapter runs in between. A batch hook written
    without the trailing ``dataloader_idx`` is called without it, as Lightning does with one dataloader.
    """
    takes_dataloader_idx = check_arity(event, hook, leading=2)
    if takes_dataloader_idx and _takes_payload_by_name(event, hook):
        return hook

    def receive(trainer: Any, **payload: Any) -> Any:
        if not takes_dataloader_idx:
            del payload["dataloader_idx"]
        return hook(trainer, *payload.values())

    receive.__qualname__ = getattr(hook, "__qualname__", repr(hook))
    return receive


def _takes_payload_by_name(event: Event, hook: Callable[..., Any]) -> bool:
    names = ["pl_module", *event.payload]
    parameters = list(signature_of(hook).parameters.values())[: len(names) + 1]
    by_name = all(parameter.kind is parameter.POSITIONAL_OR_KEYWORD for parameter in parameters)
    return by_name and [parameter.name for parameter in parameters[1:]] == names


def check_arity(event: Event, hook: Callable[..., Any], leading: int) -> bool:
    """Reject a hook that cannot take the event's arguments now, not when the event first fires. Returns whether
    it takes the whole payload: False for a batch hook without the trailing ``dataloader_idx``."""
    signature = signature_of(hook)
    count = leading + len(event.payload)
    try:
        signature.bind(*range(count))
        return True
    except TypeError as mismatch:
        if event.payload[-1:] == ("dataloader_idx",) and _binds(signature, count - 1):
            return False
        expected = ["trainer", "pl_module"][:leading] + list(event.payload)
        raise TypeError(
            f"{getattr(hook, '__qualname__', hook)} cannot receive {event.name}({', '.join(expected)}): "
            f"{mismatch}. Give it that signature."
        ) from None


# Every run checks every hook of every callback; a hook's signature is worked out once per function (and once
# more for its bound form), not once per run.
_SIGNATURES: weakref.WeakKeyDictionary[Callable[..., Any], inspect.Signature] = weakref.WeakKeyDictionary()
_BOUND_SIGNATURES: weakref.WeakKeyDictionary[Callable[..., Any], inspect.Signature] = weakref.WeakKeyDictionary()


def signature_of(hook: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature(hook)``, cached for plain functions and methods bound to any instance."""
    function = getattr(hook, "__func__", hook)
    if not isinstance(function, types.FunctionType):  # a mock, a partial, a callable object: as it is now
        return inspect.signature(hook)
    cache = _SIGNATURES if function is hook else _BOUND_SIGNATURES
    signature = cache.get(function)
    if signature is None:
        signature = cache[function] = inspect.signature(hook)
    return signature


def _binds(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True
