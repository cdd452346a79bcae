"""Hyperparameters: what ``save_hyperparameters`` records, for modules, datamodules and any class of yours."""

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


class HyperparametersMixin:
    """``save_hyperparameters``, ``hparams`` and ``hparams_initial``: LightningModule and LightningDataModule have
    them; mix it into any class of yours to record its ``__init__`` arguments the same way."""

    def save_hyperparameters(
        self, *args: Any, ignore: Sequence[str] | str | None = None, frame: Any = None, logger: bool = True
    ) -> None:
        """Record the ``__init__`` arguments (or the named ones, or one mapping given) in ``self.hparams``.

        Called in a base class's ``__init__``, it records the arguments of every ``__init__`` that called it through
        ``super().__init__(...)`` for this object too; a subclass's value wins for a name both take. Called from a
        helper method, it records the arguments of the ``__init__`` that called the helper. As in Lightning, each
        call adds to what earlier calls recorded (a base's call, then a subclass's)."""
        caller = frame if frame is not None else inspect.currentframe().f_back
        try:
            hparams = collect_init_arguments(_init_frame_of(self, caller), args, ignore)
        finally:
            del caller
        self._log_hyperparams = logger
        self.hparams.update(hparams)
        self._hparams_initial = AttributeDict(self.hparams)

    @property
    def hparams(self) -> AttributeDict:
        """What ``save_hyperparameters`` recorded (and later changes to it); empty before."""
        if getattr(self, "_hparams", None) is None:
            self._hparams = AttributeDict()
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        """A copy of what ``save_hyperparameters`` recorded, whatever was changed in ``hparams`` since."""
        return AttributeDict(getattr(self, "_hparams_initial", None) or {})


def _init_frame_of(owner: Any, frame: FrameType | None) -> FrameType | None:
    """The innermost ``__init__`` of ``owner`` at or above ``frame`` (a helper method it called is passed over)."""
    while frame is not None and not (_is_init(frame) and _self_of(frame) is owner):
        frame = frame.f_back
    return frame


def _is_init(frame: FrameType) -> bool:
    return frame.f_code.co_name == "__init__" and "__class__" in frame.f_locals


def collect_init_arguments(
    frame: FrameType | None, selected: Sequence[Any], ignore: Sequence[str] | str | None
) -> dict[str, Any]:
    """The arguments of the ``__init__`` running in ``frame`` (none without one), narrowed as save_hyperparameters
    asks. ``selected`` may name arguments (strings), or hold one mapping to record as it is.
    """
    if len(selected) == 1 and isinstance(selected[0], Mapping):
        return dict(selected[0])
    if len(selected) == 1 and hasattr(selected[0], "__dict__") and not isinstance(selected[0], str):
        return dict(vars(selected[0]))  # an argparse.Namespace

    arguments = _chained_init_arguments(frame) if frame is not None else {}
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


def _chained_init_arguments(frame: FrameType) -> dict[str, Any]:
    """The arguments of ``frame``'s function, merged with those of each ``__init__`` up the stack that called it
    with ``super().__init__`` for the same object; as in Lightning, the outermost (the subclass's) wins."""
    merged = _init_arguments(frame)
    owner = _self_of(frame)
    caller = frame.f_back
    while owner is not None and caller is not None and _is_init(caller) and _self_of(caller) is owner:
        merged.update(_init_arguments(caller))
        caller = caller.f_back
    return merged


def _self_of(frame: FrameType) -> Any:
    code = frame.f_code
    return frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None


def _init_arguments(frame: FrameType) -> dict[str, Any]:
    """Named and keyword arguments; ``*args`` have no names to record, so Lightning drops them, and so do we."""
    info = inspect.getargvalues(frame)
    arguments: dict[str, Any] = {}
    for name in info.args[1:]:  # the first is self
        arguments[name] = info.locals[name]
    if info.keywords:
        arguments.update(info.locals.get(info.keywords, {}))
    return arguments
