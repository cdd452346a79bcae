"""What happens after a training batch: validation when due, plateau schedulers, the step count, requested
checkpoints, stop conditions and signals. The fit loop (``loop/fit.py``) calls ``end_of_batch`` only when
``batch_end_may_act`` says something besides counting the step and writing requested checkpoints can happen."""

from __future__ import annotations

import signal
from typing import Any

from engineering.checkpointing.checkpoint import stop_for_preemption
from engineering.data.loaders import reload_val_loaders_if_due
from engineering.loop import schedule
from engineering.loop.evaluation import run_validation_in_fit
from engineering.optimization.optimizers import step_schedulers


def batch_end_may_act(trainer: Any, validates: bool) -> bool:
    """Whether, this epoch, a batch's end before the last can do more than count the step and write requested
    checkpoints, unless a stop request or a signal arrives: validation within the epoch, a step or time limit,
    plateau schedulers, several ranks' vote. (The last batch's end is eventful whenever the epoch validates.)"""
    return ((validates and schedule.validates_within_epoch(trainer)) or trainer.max_steps != -1
            or trainer.max_time is not None or trainer.strategy.world_size > 1
            or bool(trainer.lightning_module.automatic_optimization and trainer.lr_scheduler_configs))


def end_of_batch(trainer: Any, batch_idx: int, is_last: bool, window_end: bool, started: float, validates: bool,
                  checkpointers: list[Any]) -> bool:
    """Validation when due, plateau schedulers, requested checkpoints, signals; returns whether the epoch ends."""
    progress, module = trainer.progress, trainer.lightning_module
    # Without a step or time limit and a stop request, there is nothing to ask: no call.
    stopping = ((trainer.max_steps != -1 or trainer.max_time is not None or progress.should_stop)
                and schedule.epoch_must_end(trainer, started))
    signum = 0  # a signal that cut validation short, agreed by all ranks
    if validates and schedule.validation_due(trainer, batch_idx, is_last, stopping, started):
        if window_end:
            module.on_validation_model_zero_grad()  # free gradient memory during validation
        reload_val_loaders_if_due(trainer)
        signum = run_validation_in_fit(trainer)
        stopping = stopping or schedule.epoch_must_end(trainer, started)  # EarlyStopping decided in validation
    if window_end and module.automatic_optimization and trainer.lr_scheduler_configs:
        step_schedulers(trainer, "step", batch_idx, plateau=True)  # plateau ones follow what validation logged
    if window_end:  # after validation: Lightning logs validation at the step it followed
        progress.batches_that_stepped += 1
    if not is_last:  # the last batch's requests wait for the end of the epoch, which completes it
        for checkpointer in checkpointers:  # most batches request nothing: no call then
            if checkpointer.pending_writes:
                checkpointer.write_requested(trainer)
        if window_end:  # never mid-window: the accumulated gradients are not in a checkpoint
            # Several ranks vote every few steps even when none was signalled; one process only asks itself.
            if not signum and (trainer.received_signal or trainer.strategy.world_size > 1):
                signum = schedule.signal_agreed(trainer, every=schedule.PREEMPTION_POLL_STEPS)
            if signum:
                stop_for_signal(trainer, signum)
    return stopping


def stop_for_signal(trainer: Any, signum: int) -> None:
    """At a step boundary: Ctrl-C ends the run as a KeyboardInterrupt (loop/run.py shuts down gracefully); a
    preemption signal saves ``hpc_ckpt_<n>.ckpt`` and exits."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    trainer.received_signal = signum  # on a rank that was not signalled itself, what the others agreed on
    stop_for_preemption(trainer)
