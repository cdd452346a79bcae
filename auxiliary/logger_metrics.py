"""What callbacks that log to loggers share: when a step is logged, and how values reach the loggers."""

from __future__ import annotations

from typing import Any

from engineering import MisconfigurationError, events


def require_logger(trainer: Any, callback: str) -> None:
    """Fail at the start of the run, naming the fix, when ``callback`` would have nowhere to log."""
    if not trainer.loggers:
        raise MisconfigurationError(
            f"{callback} sends its values to loggers, but this Trainer has none (logger=False). "
            f"Pass a logger, e.g. Trainer(logger=CSVLogger('logs')), or remove {callback}."
        )


def logging_due(trainer: Any) -> bool:
    """Whether this training step is one the Trainer sends to loggers (every ``log_every_n_steps``)."""
    # + 1: the step being run is counted only after it ends, as in the Trainer's own flush.
    return (trainer.progress.batches_that_stepped + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop


def send_to_loggers(trainer: Any, metrics: dict[str, float]) -> None:
    """Send ``metrics`` to every logger over the bus, at the step loggers see now, from global rank 0."""
    if metrics and trainer.is_global_zero:
        trainer.emit(events.log_metrics, metrics=metrics, step=trainer.progress.batches_that_stepped)
