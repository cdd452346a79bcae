"""Logged values on their way out: to the loggers every ``log_every_n_steps`` and at epoch ends, and as floats
for those who need numbers now (the progress bar, ``trainer.validate``'s results)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from engineering import events
from engineering.bus.log_writer import PendingMetrics


def metrics_to_floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """The values as floats now: one host transfer per device, not one per metric."""
    return dict(PendingMetrics(metrics, {}))


def flush_logged_metrics(trainer: Any, kind: str, step: int | None = None, with_epoch: bool = True) -> None:
    """Send the ``kind`` ("step" or "epoch") values logged since the last flush to the loggers, as floats,
    with the current ``epoch`` added unless ``with_epoch`` is False."""
    unlogged = trainer.results.take_unlogged(kind)
    if not unlogged or trainer.sanity_checking:
        return
    trainer.results.logged_metrics.update(unlogged)
    receivers = events.log_metrics.receivers_of(trainer)
    if receivers and trainer.is_global_zero:
        # On a GPU the copy to the host starts here; background loggers wait for it, not the training thread.
        metrics: Mapping[str, float] = PendingMetrics(unlogged, {"epoch": trainer.progress.epoch} if with_epoch else {})
        if not all(getattr(receiver, "takes_pending_metrics", False) for receiver in receivers):
            metrics = dict(metrics)  # read on this thread: converted once, here
        step = trainer.progress.batches_that_stepped if step is None else step
        trainer.emit(events.log_metrics, metrics=metrics, step=step)
