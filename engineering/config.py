"""Trainer flags: every value checked once, when the Trainer is built, each error naming the fix.

``TrainerConfig`` holds the flags as the user gave them. ``resolve`` derives the values a run uses from them:
``fast_dev_run``, ``overfit_batches`` and ``barebones`` shape those values without overwriting what was given.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import re
from typing import Any

from engineering.errors import MisconfigurationError
from engineering.optimization.nonfinite import check_policy
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
    if isinstance(value, float) and value > 1.0 and value.is_integer():
        value = int(value)  # as Lightning: 2.0 means two batches (a config file may write an int as a float)
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


def check_val_check_interval(value: Any, check_val_every_n_epoch: int | None) -> Any:
    if value is None:
        return None  # 1.0 for runs (resolve); kept apart from a 1.0 given, which check_val_every_n_epoch=None refuses
    if check_val_every_n_epoch is None and isinstance(value, float):
        raise MisconfigurationError(
            "`val_check_interval` should be an integer or a time-based duration (str 'DD:HH:MM:SS', datetime.timedelta,"
            " or dict kwargs for timedelta) when `check_val_every_n_epoch=None`."
        )
    if isinstance(value, (str, dict, datetime.timedelta)):
        val_check_seconds(value)
        return value  # read as given, as in Lightning; the loop asks val_check_seconds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationError(
            f"val_check_interval={value!r} must be an int (batches), a float in (0, 1], or a duration "
            "('DD:HH:MM:SS', a datetime.timedelta or a dict like {'minutes': 30})."
        )
    if isinstance(value, int) and value < 1:
        raise MisconfigurationError(f"val_check_interval={value} must be at least 1 batch.")
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise MisconfigurationError(f"val_check_interval={value} must be a fraction in (0, 1] of an epoch.")
    return value


def val_check_seconds(interval: Any) -> float | None:
    """The seconds between validations when ``val_check_interval`` is a duration; None when it counts batches."""
    if isinstance(interval, (int, float)):
        return None
    if isinstance(interval, datetime.timedelta):
        return interval.total_seconds()
    if isinstance(interval, dict):
        try:
            return datetime.timedelta(**interval).total_seconds()
        except TypeError as wrong:
            raise TypeError(f"val_check_interval={interval!r}: {wrong}. Use datetime.timedelta's keywords, "
                            "e.g. {'hours': 1, 'minutes': 30}.") from None
    parts = interval.split(":")
    if len(parts) != 4:
        raise MisconfigurationError(
            f"Invalid time format for `val_check_interval`: {interval!r}. Expected 'DD:HH:MM:SS'."
        )
    try:
        days, hours, minutes, seconds = (int(part) for part in parts)
    except ValueError:
        raise MisconfigurationError(
            f"Non-integer component in `val_check_interval` string: {interval!r}. Use 'DD:HH:MM:SS'."
        ) from None
    return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()


def val_check_batch(interval: Any, num_training_batches: float) -> float | None:
    """Validate after every this many training batches; None when a duration decides instead."""
    if val_check_seconds(interval) is not None:
        return None
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


@dataclasses.dataclass
class TrainerConfig:
    """Every Trainer flag as given, validated on construction (see ``Trainer`` for what each means)."""

    accelerator: Any = "auto"
    strategy: Any = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    precision: Any = None
    logger: Any = None
    callbacks: Any = None
    fast_dev_run: Any = False
    max_epochs: int | None = None
    min_epochs: int | None = None
    max_steps: int = -1
    min_steps: int | None = None
    max_time: Any = None
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    limit_test_batches: int | float | None = None
    limit_predict_batches: int | float | None = None
    overfit_batches: int | float = 0.0
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int | None = None
    log_every_n_steps: int | None = None
    enable_checkpointing: bool | None = None
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: int | float | None = None
    gradient_clip_algorithm: str | None = None
    deterministic: bool | str | None = None
    benchmark: bool | None = None
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = 0
    profiler: Any = None
    detect_anomaly: bool = False
    on_nonfinite: str | None = None
    barebones: bool = False
    default_root_dir: Any = None

    def __post_init__(self) -> None:
        for name in ("inference_mode", "detect_anomaly", "barebones", "sync_batchnorm", "use_distributed_sampler"):
            check_bool(name, getattr(self, name))
        for name in ("enable_checkpointing", "enable_progress_bar", "enable_model_summary", "benchmark"):
            if getattr(self, name) is not None:
                check_bool(name, getattr(self, name))
        if self.barebones:
            refuse_with_barebones(
                enable_checkpointing=self.enable_checkpointing, enable_progress_bar=self.enable_progress_bar,
                enable_model_summary=self.enable_model_summary, logger=self.logger, profiler=self.profiler,
            )
        self.fast_dev_run = check_fast_dev_run(self.fast_dev_run)
        check_int("max_steps", self.max_steps, minimum=-1)
        check_int("num_nodes", self.num_nodes, minimum=1)
        check_int("accumulate_grad_batches", self.accumulate_grad_batches, minimum=1)
        check_int("reload_dataloaders_every_n_epochs", self.reload_dataloaders_every_n_epochs, minimum=0)
        for name, minimum in (("min_steps", 0), ("min_epochs", 0), ("max_epochs", -1), ("check_val_every_n_epoch", 1),
                              ("num_sanity_val_steps", -1), ("log_every_n_steps", 1)):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=minimum)
        parse_max_time(self.max_time)
        for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
                     "overfit_batches"):
            setattr(self, name, check_limit(name, getattr(self, name)))
        self.val_check_interval = check_val_check_interval(self.val_check_interval, self.check_val_every_n_epoch)
        check_gradient_clipping(self.gradient_clip_val, self.gradient_clip_algorithm)
        check_policy(self.on_nonfinite)
        if self.deterministic not in (None, True, False, "warn"):
            raise MisconfigurationError(f"deterministic={self.deterministic!r}; use True, False, 'warn' or None.")
        if self.default_root_dir is not None and not isinstance(self.default_root_dir, (str, os.PathLike)):
            raise MisconfigurationError(f"default_root_dir={self.default_root_dir!r} must be a path (str or PathLike).")


def resolve(config: TrainerConfig) -> dict[str, Any]:
    """The flag values a run uses: defaults filled in, then fast_dev_run, overfit_batches and barebones applied."""
    values = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    quiet = config.barebones or bool(config.fast_dev_run)
    values.update(
        default_root_dir=os.fspath(config.default_root_dir) if config.default_root_dir is not None else os.getcwd(),
        enable_progress_bar=not config.barebones and config.enable_progress_bar is not False,
        enable_model_summary=not config.barebones and config.enable_model_summary is not False,
        enable_checkpointing=not quiet and config.enable_checkpointing is not False,
        num_sanity_val_steps=0 if config.barebones else (
            2 if config.num_sanity_val_steps is None else config.num_sanity_val_steps),
        log_every_n_steps=50 if config.log_every_n_steps is None else config.log_every_n_steps,
        gradient_clip_algorithm=config.gradient_clip_algorithm or "norm",
        max_time=parse_max_time(config.max_time),
        logger=False if quiet else config.logger,
        val_check_interval=1.0 if config.val_check_interval is None else config.val_check_interval,
    )
    if config.overfit_batches:
        values.update(limit_train_batches=config.overfit_batches, limit_val_batches=config.overfit_batches)
    if config.fast_dev_run:
        runs = config.fast_dev_run
        values.update(
            limit_train_batches=runs, limit_val_batches=runs, limit_test_batches=runs, limit_predict_batches=runs,
            max_epochs=1, max_steps=runs, num_sanity_val_steps=0, val_check_interval=1.0, check_val_every_n_epoch=1,
        )
    return values


def check_gradient_clipping(value: Any, algorithm: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
        raise MisconfigurationError(f"gradient_clip_val={value!r} must be a non-negative number or None.")
    if algorithm not in (None, "norm", "value"):
        raise MisconfigurationError(f"gradient_clip_algorithm={algorithm!r} is not supported; use 'norm' or 'value'.")


#: The flags a Trainer exposes as attributes, with the values runs use (``resolve``); setting one re-validates it.
RUN_FLAGS = (
    "barebones", "fast_dev_run", "default_root_dir", "enable_checkpointing", "enable_progress_bar",
    "enable_model_summary", "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time", "limit_train_batches",
    "limit_val_batches", "limit_test_batches", "limit_predict_batches", "overfit_batches", "val_check_interval",
    "check_val_every_n_epoch", "num_sanity_val_steps", "log_every_n_steps", "accumulate_grad_batches",
    "gradient_clip_val", "gradient_clip_algorithm", "deterministic", "benchmark", "inference_mode", "detect_anomaly",
    "on_nonfinite", "use_distributed_sampler", "num_nodes", "sync_batchnorm", "reload_dataloaders_every_n_epochs",
)
