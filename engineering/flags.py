"""Trainer flags: each value checked when the Trainer is built, each error naming the fix."""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

from engineering.logging import MisconfigurationError
from engineering.profiler import PassThroughProfiler, Profiler


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise MisconfigurationError(f"{name}={value!r} must be True or False.")
    return value


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MisconfigurationError(f"{name}={value!r} must be an int >= {minimum}.")
    return value


def check_limit(name: str, value: Any) -> int | float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationError(f"{name}={value!r} must be an int (batches) or a float fraction in [0, 1].")
    if isinstance(value, int):
        if value < 0:
            raise MisconfigurationError(f"{name}={value} is negative; pass 0 or more batches.")
        return value
    if not 0.0 <= value <= 1.0:
        raise MisconfigurationError(f"{name}={value} must be a fraction in [0.0, 1.0], or an int number of batches.")
    return value


def check_fast_dev_run(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int) or value < 0:
        raise MisconfigurationError(f"fast_dev_run={value!r} must be True/False or a non-negative int of batches.")
    return value


def check_val_check_interval(value: Any) -> int | float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationError(f"val_check_interval={value!r} must be an int (batches) or a float in (0, 1].")
    if isinstance(value, int) and value < 1:
        raise MisconfigurationError(f"val_check_interval={value} must be at least 1 batch.")
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise MisconfigurationError(f"val_check_interval={value} must be a fraction in (0, 1] of an epoch.")
    return value


def val_check_batch(interval: int | float, num_training_batches: float) -> float:
    if isinstance(interval, int):
        return interval
    if math.isinf(num_training_batches):
        if interval != 1.0:
            raise MisconfigurationError(
                f"val_check_interval={interval} is a fraction, but the training loader has no length. "
                "Pass an int number of batches."
            )
        return math.inf
    return max(1, int(num_training_batches * interval))


def parse_max_time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return datetime.timedelta(**value).total_seconds()
    if isinstance(value, str) and re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", value):
        days, hours, minutes, seconds = (int(part) for part in value.split(":"))
        return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
    raise MisconfigurationError(
        f"max_time={value!r} is not understood; use 'DD:HH:MM:SS', a datetime.timedelta or a dict like {{'hours': 1}}."
    )


def refuse_with_barebones(**flags: Any) -> None:
    enabled = [name for name, value in flags.items() if value not in (None, False)]
    if enabled:
        raise MisconfigurationError(
            f"barebones=True turns off {', '.join(enabled)}; remove those flags or set barebones=False."
        )


def as_list(value: Any, flag: str, kind: type) -> list[Any]:
    items = [value] if isinstance(value, kind) else list(value or [])
    wrong = [type(item).__name__ for item in items if not isinstance(item, kind)]
    if wrong:
        raise MisconfigurationError(f"{flag} must hold {kind.__name__} objects; got {wrong}.")
    return items


def check_loaders_or_datamodule(train: Any, val: Any, datamodule: Any, stage: str) -> None:
    if datamodule is not None and (train is not None or val is not None):
        raise MisconfigurationError(
            f"Trainer.{stage} got both dataloaders and a datamodule; pass one or the other."
        )


def resolve_profiler(profiler: Any) -> Profiler:
    if profiler in (None, False):
        return PassThroughProfiler()
    if isinstance(profiler, Profiler):
        return profiler
    name = "simple" if profiler is True else profiler
    if isinstance(name, str):
        from importlib.metadata import entry_points

        found = {point.name: point for point in entry_points(group="tribus.profilers")}
        if name in found:
            return found[name].load()()
        raise MisconfigurationError(
            f"profiler={profiler!r} is not available; installed profilers: {sorted(found) or 'none'}. "
            "Pass one of those names, True, or a Profiler object."
        )
    raise MisconfigurationError(f"profiler={profiler!r} must be a name, True, or a Profiler object.")
