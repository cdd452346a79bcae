"""The loops: fit, evaluation (validate/test/sanity check) and predict, each a plain function.

Read ``run_fit`` top to bottom to follow one training step; ``optim.AutomaticStep`` holds the
optimizer step and ``strategies/single.py`` the backward. Every event goes through ``trainer.emit``,
which calls the callbacks' hook, then the module's hook of the same name.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from typing import Any

import torch

from engineering import events, optim
from engineering.checkpoint import restore_rng_states, stop_for_preemption, write_requested_checkpoints
from engineering.data import epoch_batches, with_last_flag
from engineering.logging import metrics_to_floats
from engineering.profiler import PassThroughProfiler
from research import LightningDataModule, LightningModule


@dataclass
class Progress:
    """Everything that says where a run is. A checkpoint stores it whole; resuming reads it back (all but
    the stop request, which belonged to the run that saved)."""

    epoch: int = 0
    global_step: int = 0                # optimizer steps taken
    batch_idx: int = 0                  # next batch to run within the epoch; exact resume starts here
    batches_that_stepped: int = 0       # the step number loggers see
    total_batch_idx: int = 0            # batches run over all epochs
    sampler_seed: int | None = None     # the training order of epoch e is fixed by (sampler_seed, e)
    should_stop: bool = False
    stop_reason: str = ""


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------
def run_fit(trainer: Any, resumed_rng_states: dict[str, Any] | None = None) -> None:
    """Train until an epoch, step or time limit, or until someone sets ``trainer.should_stop``.

        sanity check: validation over num_sanity_val_steps batches; its metrics are dropped (not when resuming)
        on_train_start
        while epochs remain:
            on_train_epoch_start
            for batch_idx, batch in the training batches (from progress.batch_idx when resuming,
                                                          skipped without being read):
                batch → device                     on_before_batch_transfer, transfer_batch_to_device, …
                on_train_batch_start               the module returning -1 ends the epoch
                automatic optimization             optim.AutomaticStep: training_step, zero_grad,
                                                   backward, clip, optimizer step (once per time split
                                                   with truncated_bptt_steps: optim.train_through_time)
                or manual: training_step           the module steps its own optimizers
                on_train_batch_end
                step-interval schedulers; metrics to loggers every log_every_n_steps
                validation, when val_check_interval says so
                the batch is complete: write the checkpoints ModelCheckpoint asked for during it
                preempted (SIGTERM)? save, exit
                stop at max_steps, max_time, or should_stop (once min_epochs and min_steps are met)
            epoch metrics; on_train_epoch_end; metrics to loggers
            epoch-interval schedulers; epoch += 1
            the epoch is complete: write requested checkpoints; preempted? save, exit
        on_train_end

    Checkpoints are written only where a batch or an epoch is complete, so that resuming from one repeats
    nothing and skips nothing. ``resumed_rng_states`` are put back at the matching point: before the epoch
    when the checkpoint was written between epochs, else once the epoch's data iterator exists.
    """
    progress = trainer.progress
    module = trainer.lightning_module
    resuming = trainer.ckpt_path is not None
    if trainer.num_sanity_val_steps and trainer.val_dataloaders_present and progress.global_step == 0 and not resuming:
        _sanity_check(trainer)

    module.train()
    trainer.emit(events.on_train_start)
    started = time.monotonic()
    rng_states = resumed_rng_states
    while not _fit_done(trainer):
        if rng_states is not None and progress.batch_idx == 0:
            restore_rng_states(rng_states)
            rng_states = None
        if progress.batch_idx == 0:  # a run resumed mid-epoch keeps the aggregates its checkpoint restored
            trainer.results.start_epoch("train")
        trainer.results.stage = "train"
        trainer.emit(events.on_train_epoch_start)
        ran_last_batch = _run_training_epoch(trainer, module, started, rng_states)
        rng_states = None

        trainer.results.stage = "train"
        trainer.results.end_epoch("train")
        trainer.emit(events.on_train_epoch_end)
        if ran_last_batch and module.automatic_optimization:
            optim.step_schedulers(trainer, "epoch", progress.epoch, plateau=True)
        trainer.results.take_unlogged("step")  # step values not flushed by now are never logged (Lightning)
        flush_logged_metrics(trainer, "epoch", step=progress.batches_that_stepped - 1)
        progress.epoch += 1
        progress.batch_idx = 0
        write_requested_checkpoints(trainer, trainer.checkpoint_callbacks)
        if _preemption_agreed(trainer, every=1):
            stop_for_preemption(trainer)
    trainer.emit(events.on_train_end)


def _run_training_epoch(trainer: Any, module: Any, started: float, rng_states: dict[str, Any] | None) -> bool:
    """One epoch of training batches; returns whether its last batch ran."""
    progress = trainer.progress
    accumulate = trainer.accumulate_grad_batches
    automatic = module.automatic_optimization
    profile = trainer.profiler.profile
    move = batch_mover(trainer)
    validates = _validates_this_epoch(trainer)
    checkpointers = trainer.checkpoint_callbacks
    batches = epoch_batches(
        trainer.train_dataloader, trainer.num_training_batches, progress.epoch, progress.sampler_seed, progress.batch_idx,
        trainer.strategy.process_dataloader,
    )
    training_step = step_function(trainer, "training_step", trainer.strategy.training_step_callable())
    automatic_step = optim.AutomaticStep(trainer, module, training_step) if automatic else None
    through_time = automatic and module.truncated_bptt_steps > 0
    profiling = not isinstance(trainer.profiler, PassThroughProfiler)
    if profiling:
        batches = _timed_fetches(batches, profile)
    if rng_states is not None:  # resuming mid-epoch: the random state the checkpoint saw after its last batch
        restore_rng_states(rng_states)

    for batch_idx, batch, is_last in batches:
        if move is not _unchanged or profiling:  # the no-op transfer is skipped unless it is being timed
            with profile("batch_transfer"):
                batch = move(batch, 0)
        trainer.results.batch = batch
        if events.on_train_batch_start.receivers:  # an event nobody listens to costs not even a call
            responses = trainer.emit(events.on_train_batch_start, batch=batch, batch_idx=batch_idx)
            if _module_answered(responses, -1):
                return False

        if automatic:
            window_end = (batch_idx + 1) % accumulate == 0 or is_last
            if through_time:
                outputs = optim.train_through_time(automatic_step, module, batch, batch_idx)
            else:
                outputs = automatic_step(batch, batch_idx, batch_idx % accumulate == 0, window_end)
            if trainer.lr_scheduler_configs:  # non-plateau schedulers step right after the optimizer
                if window_end:
                    optim.step_schedulers(trainer, "step", batch_idx, plateau=False)
                if is_last:
                    optim.step_schedulers(trainer, "epoch", progress.epoch, plateau=False)
        else:
            window_end = True
            trainer.results.hook = "training_step"
            outputs = training_step(batch, batch_idx)

        progress.batch_idx = batch_idx + 1
        progress.total_batch_idx += 1
        if events.on_train_batch_end.receivers:  # only then are the outputs detached and copied for it
            outputs = optim.batch_end_outputs(outputs, automatic, accumulate)
            trainer.emit(events.on_train_batch_end, outputs=outputs, batch=batch, batch_idx=batch_idx)
        if (progress.batches_that_stepped + 1) % trainer.log_every_n_steps == 0 or progress.should_stop:
            flush_logged_metrics(trainer, "step")

        stopping = _epoch_must_end(trainer, started)
        if validates and _validation_due(trainer, batch_idx, is_last, stopping):
            if window_end:
                module.on_validation_model_zero_grad()  # free gradient memory during validation
            run_validation_in_fit(trainer)
            stopping = stopping or _epoch_must_end(trainer, started)  # e.g. EarlyStopping decided in validation
        if window_end and automatic and trainer.lr_scheduler_configs:  # plateau ones follow what validation logged
            optim.step_schedulers(trainer, "step", batch_idx, plateau=True)
        if window_end:  # after validation: Lightning logs validation at the step it followed
            progress.batches_that_stepped += 1
        if not is_last:  # the last batch's requests wait for the end of the epoch, which completes it
            write_requested_checkpoints(trainer, checkpointers)
            if window_end and _preemption_agreed(trainer, every=_PREEMPTION_POLL_STEPS):  # never mid-window
                stop_for_preemption(trainer)
        if stopping:
            return is_last
    return True


def _timed_fetches(batches: Iterator[Any], profile: Callable[[str], Any]) -> Iterator[Any]:
    """The same batches, each fetch timed as "data_fetch" (only when a profiler is on: it costs a little)."""
    while True:
        with profile("data_fetch"):
            item = next(batches, None)
        if item is None:
            return
        yield item


# With several ranks, asking whether any received a preemption signal is a collective: poll every few steps.
_PREEMPTION_POLL_STEPS = 8


def _preemption_agreed(trainer: Any, every: int) -> bool:
    """Whether to stop for a preemption signal now; with several ranks all decide together, or they deadlock."""
    received = trainer.received_signal is not None
    if trainer.strategy.world_size == 1:
        return received
    if trainer.progress.global_step % every:
        return False
    return trainer.strategy.reduce_boolean_decision(received, all=False)


def _module_answered(responses: list[tuple[Any, Any]], answer: Any) -> bool:
    """Whether the module's own hook returned ``answer``; callbacks' return values do not steer the loop."""
    return any(response == answer for receiver, response in responses if getattr(receiver, "is_module_hook", False))


def _reached_max_steps(trainer: Any) -> bool:
    if trainer.max_steps != -1 and trainer.progress.global_step >= trainer.max_steps:
        trainer.progress.stop_reason = "max_steps"
        return True
    return False


def _epoch_must_end(trainer: Any, started: float) -> bool:
    progress = trainer.progress
    if _reached_max_steps(trainer):
        return True
    if trainer.max_time is not None and time.monotonic() - started >= trainer.max_time:
        progress.should_stop, progress.stop_reason = True, "max_time"
        return True
    return progress.should_stop and _can_stop_early(trainer)


def _fit_done(trainer: Any) -> bool:
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


def _can_stop_early(trainer: Any) -> bool:
    progress = trainer.progress
    return progress.epoch >= (trainer.min_epochs or 0) and progress.global_step >= (trainer.min_steps or 0)


def _validates_this_epoch(trainer: Any) -> bool:
    if not trainer.val_dataloaders_present or trainer.limit_val_batches == 0:
        return False
    every = trainer.check_val_every_n_epoch
    return every is None or (trainer.progress.epoch + 1) % every == 0


def _validation_due(trainer: Any, batch_idx: int, is_last: bool, stopping: bool) -> bool:
    """In an epoch that validates: whether validation runs after this batch."""
    every = trainer.check_val_every_n_epoch
    if stopping:
        return True
    interval = trainer.val_check_batch
    if math.isinf(interval):
        return is_last
    index = trainer.progress.total_batch_idx - 1 if every is None else batch_idx
    return (index + 1) % interval == 0


def flush_logged_metrics(trainer: Any, kind: str, step: int | None = None) -> None:
    """Send the ``kind`` ("step" or "epoch") values logged since the last flush to the loggers, as floats."""
    unlogged = trainer.results.take_unlogged(kind)
    if not unlogged or trainer.sanity_checking:
        return
    trainer.results.logged_metrics.update(unlogged)
    if events.log_metrics.receivers and trainer.is_global_zero:
        metrics = metrics_to_floats(unlogged)  # the one host sync of a flush
        metrics.setdefault("epoch", trainer.progress.epoch)
        step = trainer.progress.batches_that_stepped if step is None else step
        trainer.emit(events.log_metrics, metrics=metrics, step=step)


_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def batch_mover(trainer: Any) -> Callable[[Any, int], Any]:
    """The function a loop moves each batch with: on_before_batch_transfer → transfer_batch_to_device →
    on_after_batch_transfer → the precision's input cast. The datamodule's hooks win where it defines them.

    On CPU in full precision with no hook overridden, every step of that is a no-op: skip it all.
    """
    module = trainer.lightning_module
    datamodule = trainer.datamodule
    before = after = module
    if datamodule is not None:
        if _overrides(type(datamodule), LightningDataModule, "on_before_batch_transfer"):
            before = datamodule
        if _overrides(type(datamodule), LightningDataModule, "on_after_batch_transfer"):
            after = datamodule
    strategy = trainer.strategy
    customised = before is datamodule or after is datamodule or any(
        _overrides(type(module), LightningModule, hook) for hook in _TRANSFER_HOOKS
    )
    if not customised and strategy.root_device.type == "cpu" and not strategy.precision.casts_input:
        return _unchanged

    def move(batch: Any, dataloader_idx: int) -> Any:
        batch = before.on_before_batch_transfer(batch, dataloader_idx)
        batch = module.transfer_batch_to_device(batch, strategy.root_device, dataloader_idx)
        batch = after.on_after_batch_transfer(batch, dataloader_idx)
        return strategy.precision.convert_input(batch)

    return move


def step_function(trainer: Any, action: str, step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` under the precision's forward context, timed as ``action`` by the profiler. Where neither
    applies (full precision, no profiler), ``step`` itself: the loops call it with no wrapper in between."""
    return trainer.profiler.timed(action, trainer.strategy.precision.wrap_step(step))


def _unchanged(batch: Any, dataloader_idx: int) -> Any:
    return batch


@functools.cache
def _overrides(subclass: type, base: type, hook: str) -> bool:
    return getattr(subclass, hook) is not getattr(base, hook)


# ---------------------------------------------------------------------------------------------
# validation, test and the sanity check
# ---------------------------------------------------------------------------------------------
_STAGE_EVENTS = {
    stage: {
        name: getattr(events, f"on_{stage}_{name}")
        for name in ("start", "end", "epoch_start", "epoch_end", "batch_start", "batch_end")
    }
    for stage in ("validation", "test", "predict")
}


def _sanity_check(trainer: Any) -> None:
    trainer.sanity_checking = True
    try:
        trainer.emit(events.on_sanity_check_start)
        run_evaluation(trainer, "validation", trainer.val_dataloaders, trainer.num_sanity_val_batches)
        trainer.emit(events.on_sanity_check_end)
    finally:
        trainer.sanity_checking = False
    trainer.results.reset()


def run_validation_in_fit(trainer: Any) -> None:
    with trainer.profiler.profile("validation"):
        run_evaluation(trainer, "validation", trainer.val_dataloaders, trainer.num_val_batches)
    trainer.results.stage = "train"


def run_evaluation(trainer: Any, stage: str, loaders: list[Any], limits: list[float]) -> list[dict[str, float]]:
    """One pass over validation or test data.

        on_{stage}_model_eval
        on_{stage}_start; on_{stage}_epoch_start
        for each dataloader, batch: batch → device; on_{stage}_batch_start; {stage}_step; on_{stage}_batch_end
        epoch metrics; on_{stage}_epoch_end; metrics to loggers; on_{stage}_end
    Returns one dict of epoch metrics per dataloader.
    """
    module = trainer.lightning_module
    hooks = _STAGE_EVENTS[stage]
    step_name = f"{stage}_step"
    step = step_function(trainer, step_name, getattr(module, step_name))
    several = len(loaders) > 1
    results = trainer.results
    getattr(module, f"on_{stage}_model_eval")()
    results.stage = stage
    results.start_epoch(stage)
    trainer.emit(hooks["start"])
    trainer.emit(hooks["epoch_start"])
    move = batch_mover(trainer)
    with _no_grad(trainer), trainer.profiler.profile(f"run_{stage}_evaluation"):
        for dataloader_idx, (loader, limit) in enumerate(zip(loaders, limits)):
            results.dataloader_idx = dataloader_idx if several else None
            for batch_idx, batch, _ in with_last_flag(trainer.strategy.process_dataloader(loader), limit):
                batch = move(batch, dataloader_idx)
                results.batch = batch
                trainer.emit(hooks["batch_start"], batch=batch, batch_idx=batch_idx, dataloader_idx=dataloader_idx)
                results.hook = step_name
                outputs = step(batch, batch_idx, dataloader_idx) if several else step(batch, batch_idx)
                trainer.emit(
                    hooks["batch_end"], outputs=outputs, batch=batch, batch_idx=batch_idx, dataloader_idx=dataloader_idx
                )
    results.dataloader_idx = None
    results.end_epoch(stage)
    trainer.emit(hooks["epoch_end"])
    flush_logged_metrics(trainer, "epoch")
    trainer.emit(hooks["end"])
    getattr(module, f"on_{stage}_model_train")()
    return _metrics_per_dataloader(results, stage, len(loaders))


def _metrics_per_dataloader(results: Any, stage: str, count: int) -> list[dict[str, float]]:
    logged = results.epoch_keys(stage)
    values = metrics_to_floats({key: results.callback_metrics[key] for key in logged})
    per_loader = []
    for dataloader_idx in range(count):
        suffix = f"/dataloader_idx_{dataloader_idx}"
        per_loader.append(
            {key: value for key, value in values.items() if "/dataloader_idx_" not in key or key.endswith(suffix)}
        )
    return per_loader


def _no_grad(trainer: Any) -> Any:
    use_inference_mode = trainer.inference_mode and trainer.strategy.supports_inference_mode
    return torch.inference_mode() if use_inference_mode else torch.no_grad()


# ---------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------
def run_predict(trainer: Any, loaders: list[Any], limits: list[float], keep: bool) -> list[Any]:
    """on_predict_start → per batch: on_predict_batch_start, predict_step, on_predict_batch_end → on_predict_end."""
    module = trainer.lightning_module
    hooks = _STAGE_EVENTS["predict"]
    several = len(loaders) > 1
    module.on_predict_model_eval()
    trainer.emit(hooks["start"])
    trainer.emit(hooks["epoch_start"])
    predictions: list[list[Any]] = [[] for _ in loaders]
    step = step_function(trainer, "predict_step", module.predict_step)
    move = batch_mover(trainer)
    with _no_grad(trainer):
        for dataloader_idx, (loader, limit) in enumerate(zip(loaders, limits)):
            for batch_idx, batch, _ in with_last_flag(trainer.strategy.process_dataloader(loader), limit):
                batch = move(batch, dataloader_idx)
                trainer.emit(hooks["batch_start"], batch=batch, batch_idx=batch_idx, dataloader_idx=dataloader_idx)
                outputs = step(batch, batch_idx, dataloader_idx) if several else step(batch, batch_idx)
                if keep:
                    predictions[dataloader_idx].append(outputs)
                trainer.emit(
                    hooks["batch_end"], outputs=outputs, batch=batch, batch_idx=batch_idx, dataloader_idx=dataloader_idx
                )
    trainer.emit(hooks["epoch_end"])
    trainer.emit(hooks["end"])
    return predictions if several else predictions[0]
