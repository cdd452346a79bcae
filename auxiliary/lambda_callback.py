"""LambdaCallback: a callback made of functions, one per hook, for a quick experiment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engineering import Callback
from engineering.events import HOOK_EVENTS


class LambdaCallback(Callback):
    """``LambdaCallback(on_train_epoch_end=lambda trainer, pl_module: ...)``: each keyword names a hook and
    gives the function to call there, with the hook's arguments; only those hooks are subscribed."""

    def __init__(self, **hooks: Callable[..., Any] | None) -> None:
        unknown = sorted(set(hooks) - set(HOOK_EVENTS))
        if unknown:
            raise TypeError(f"LambdaCallback got {unknown}, which are not hooks; the hooks are {sorted(HOOK_EVENTS)}.")
        self._hooks = {name: function for name, function in hooks.items() if function is not None}
        for name, function in self._hooks.items():
            if not callable(function):
                raise TypeError(f"LambdaCallback({name}=...) must be callable, got {type(function).__name__}.")
            setattr(self, name, function)  # as in Lightning: the instance's attribute is the hook

    def listens_to(self, hook: str) -> bool:
        return hook in self._hooks


def _not_given(self: LambdaCallback, *args: Any, **kwargs: Any) -> None:
    """A hook no function was given for: never subscribed (see ``listens_to``)."""


# The Trainer subscribes the hooks a class overrides, then asks listens_to: overriding every hook here and
# listening only to those given a function makes any hook available and an unused one cost nothing.
for _name in HOOK_EVENTS:
    setattr(LambdaCallback, _name, _not_given)
