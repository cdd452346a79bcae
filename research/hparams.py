"""Hyperparameters: what ``save_hyperparameters`` records, for modules and datamodules alike."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any


class AttributeDict(dict):
    """A dict whose keys are also attributes: ``hparams.lr`` and ``hparams["lr"]``.

    Reading a key that is not there as an attribute raises ``AttributeError`` naming the keys that are.
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as missing:
            raise AttributeError(f"no hyperparameter {key!r}; recorded: {sorted(self)}") from missing

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


def collect_init_arguments(
    frame: FrameType, selected: Sequence[Any], ignore: Sequence[str] | str | None
) -> dict[str, Any]:
    """The arguments of the ``__init__`` running in ``frame``, narrowed as save_hyperparameters asks.

    ``selected`` may name arguments (strings), or hold one mapping to record as it is.
    """
    if len(selected) == 1 and isinstance(selected[0], Mapping):
        return dict(selected[0])
    if len(selected) == 1 and hasattr(selected[0], "__dict__") and not isinstance(selected[0], str):
        return dict(vars(selected[0]))  # an argparse.Namespace

    arguments = _init_arguments(frame)
    if selected:
        unknown = [name for name in selected if name not in arguments]
        if unknown:
            raise ValueError(
                f"save_hyperparameters got {unknown}, which are not arguments of __init__; "
                f"choose from {sorted(arguments)}."
            )
        arguments = {name: arguments[name] for name in selected}
    ignored = {ignore} if isinstance(ignore, str) else set(ignore or ())
    return {name: value for name, value in arguments.items() if name not in ignored}


def _init_arguments(frame: FrameType) -> dict[str, Any]:
    info = inspect.getargvalues(frame)
    arguments: dict[str, Any] = {}
    for name in info.args:
        if name not in ("self", "__class__"):
            arguments[name] = info.locals[name]
    if info.varargs and info.locals.get(info.varargs):
        arguments[info.varargs] = info.locals[info.varargs]
    if info.keywords:
        arguments.update(info.locals.get(info.keywords, {}))
    return arguments
