"""When the fit loop stops, validates, or gives way to a preemption signal: questions the loop asks each batch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from engineering.config import val_check_seconds
from engineering.loop import advice

# With several ranks, asking whether any received a preemption signal is a collective: poll every few steps.
PREEMPTION_POLL_STEPS = 8


def settle_epoch_limits(trainer: Any) -> None:
    """As Lightning when fit starts: an unset max_epochs becomes 1000 (-1 when max_steps or max_time bounds the run)
    and an unset min_epochs 0 (without min_steps); the Trainer reads these values from then on, as Lightning's."""
    if trainer.max_epochs is None:
        bounded = trainer.max_steps != -1 or trainer.max_time is not None
        if not bounded:
            advice.say_max_epochs_unset(trainer)
        trainer.max_epochs = -1 if bounded else 1000
    if trainer.min_epochs is None and trainer.min_steps is None:
        trainer.min_epochs = 0


def sanity_check_due(trainer: Any) -> bool:
    """A fresh fit with validation data runs num_sanity_val_steps validation batches first; a resumed one does not."""
    return bool(trainer.num_sanity_val_steps and trainer.val_dataloaders_present
                and trainer.progress.global_step == 0 and trainer.ckpt_path is None)


def fit_done(trainer: Any) -> bool:
    """Checked before every epoch: limits reached, or a stop request that min_epochs/min_steps allow."""
    progress = trainer.progress
    if _reached_max_steps(trainer):
        return True
    if trainer.max_epochs != -1 and progress.epoch >= trainer.max_epochs:
        progress.stop_reason = progress.stop_reason or "max_epochs"
        return True
    if not progress.should_stop:
        return False
    if _can_stop_early(trainer):
        progress.stop_reason = progress.stop_reason or "should_stop"
        return True
    print(
        f"Stopping was requested, but min_epochs={trainer.min_epochs} / min_steps={trainer.min_steps} "
        "are not reached yet: training continues."
    )
    return False  # the request stays pending: training stops as soon as min_epochs/min_steps are met


def epoch_must_end(trainer: Any, started: float) -> bool:
    """Checked after every batch: max_steps, max_time, or a stop request that min_epochs/min_steps allow."""
    progress, max_steps = trainer.progress, trainer.max_steps
    if max_steps != -1 and progress.global_step >= max_steps:
        progress.stop_reason = "max_steps"
        return True
    if trainer.max_time is not None and time.monotonic() - started >= trainer.max_time:
        progress.should_stop, progress.stop_reason = True, "max_time"
        return True
    return progress.should_stop and _can_stop_early(trainer)


def _reached_max_steps(trainer: Any) -> bool:
    if trainer.max_steps != -1 and trainer.progress.global_step >= trainer.max_steps:
        trainer.progress.stop_reason = "max_steps"
        return True
    return False


def _can_stop_early(trainer: Any) -> bool:
    progress = trainer.progress
    return progress.epoch >= (trainer.min_epochs or 0) and progress.global_step >= (trainer.min_steps or 0)


def accumulation_window(batch_idx: int, accumulate_grad_batches: int, is_last: bool) -> tuple[bool, bool]:
    """Whether this batch starts an accumulation window (zero the gradients) and whether it ends one (step).
    The one place that decides (a plain step, which needs accumulate_grad_batches=1, skips the call: every batch
    is a window); an epoch's last batch always ends its window."""
    return batch_idx % accumulate_grad_batches == 0, (batch_idx + 1) % accumulate_grad_batches == 0 or is_last


def validates_this_epoch(trainer: Any) -> bool:
    if not trainer.val_dataloaders_present or trainer.limit_val_batches == 0:
        return False
    every = trainer.check_val_every_n_epoch
    return every is None or (trainer.progress.epoch + 1) % every == 0


def validates_within_epoch(trainer: Any) -> bool:
    """Whether validation can fall due before an epoch's last batch: not when it counts batches per epoch (the
    default ``check_val_every_n_epoch``) and its interval spans the whole epoch (``val_check_interval=1.0``)."""
    interval = trainer.val_check_batch
    return interval is None or trainer.check_val_every_n_epoch is None or interval < trainer.num_training_batches


def validation_due(trainer: Any, batch_idx: int, is_last: bool, stopping: bool, started: float) -> bool:
    """In an epoch that validates: whether validation runs after this batch. A duration ``val_check_interval``
    counts from the later of training's start (``started``) and the end of the last validation, across epochs;
    an epoch's end alone does not validate then (as in Lightning)."""
    if stopping:
        return True
    interval = trainer.val_check_batch
    if interval is None:  # a duration (counting batches, the usual case, costs no parsing per batch)
        if is_last and math.isinf(trainer.num_training_batches):
            return True
        ended = trainer.state.validation_ended
        since = started if ended is None else max(started, ended)
        return time.monotonic() - since >= val_check_seconds(trainer.val_check_interval)
    if math.isinf(interval):
        return is_last
    index = trainer.progress.total_batch_idx - 1 if trainer.check_val_every_n_epoch is None else batch_idx
    return (index + 1) % interval == 0


def signal_agreed(trainer: Any, every: int, count: int | None = None) -> int:
    """The signal to stop for now (0: none). With several ranks all decide together, or they deadlock: every
    ``every`` steps (or ``count``s, in validation) they vote, and the highest signal any rank received wins."""
    received = trainer.received_signal
    if trainer.strategy.world_size == 1:
        return received or 0
    if (trainer.progress.global_step if count is None else count) % every:
        return 0
    strategy = trainer.strategy
    return int(strategy.reduce(torch.tensor(received or 0, device=strategy.root_device), "max"))


def timed_fetches(batches: Iterator[Any], profile: Callable[[str], Any]) -> Iterator[Any]:
    """The same batches, each fetch timed as "data_fetch" (only when a profiler is on: it costs a little)."""
    while True:
        with profile("data_fetch"):
            item = next(batches, None)
        if item is None:
            return
        yield item
