"""The discovery door: subscribers attached to every Trainer without a change to the training script.

Two sources, in this order: the entry-point group ``tribus.callbacks`` (sorted by entry-point name;
``auxiliary`` registers the default progress bar, logger and model summary there), then the
``TRIBUS_CALLBACKS`` environment variable, a comma-separated list of ``package.module:factory``.
A factory is called with the Trainer and returns a Callback, a Logger, or None to stay out.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from engineering.errors import MisconfigurationError

ENTRY_POINT_GROUP = "tribus.callbacks"
ENVIRONMENT_VARIABLE = "TRIBUS_CALLBACKS"


def discover(trainer: Any) -> list[Any]:
    """Call every registered factory with ``trainer``; return what they built, Nones left out."""
    built = []
    for label, factory in _entry_point_factories() + _environment_factories():
        try:
            subscriber = factory(trainer)
        except Exception as error:
            raise RuntimeError(f"The subscriber factory {label} failed: {error}") from error
        if subscriber is not None:
            built.append(subscriber)
    return built


@functools.cache
def _entry_point_factories() -> list[tuple[str, Callable[[Any], Any]]]:
    # Scanning installed distributions costs milliseconds: once per process is enough.
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name)
    return [(f"entry point {point.name!r} ({point.value})", _loader(point)) for point in found]


def _loader(point: Any) -> Callable[[Any], Any]:
    def load_and_call(trainer: Any) -> Any:
        return point.load()(trainer)

    return load_and_call


def _environment_factories() -> list[tuple[str, Callable[[Any], Any]]]:
    factories = []
    for spec in filter(None, (part.strip() for part in os.environ.get(ENVIRONMENT_VARIABLE, "").split(","))):
        module_name, _, attribute = spec.partition(":")
        if not module_name or not attribute:
            raise MisconfigurationError(
                f"{ENVIRONMENT_VARIABLE} entry {spec!r} is not 'package.module:factory'."
            )
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise MisconfigurationError(
                f"{ENVIRONMENT_VARIABLE} names {spec!r}, which cannot be loaded: {error}. "
                "Check the module is importable and defines that factory."
            ) from error
        factories.append((f"{ENVIRONMENT_VARIABLE} entry {spec!r}", factory))
    return factories
