"""The evaluation loops: validation (also inside fit, and as the sanity check), test, and predict."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from engineering import events
from engineering.bus.callback import defines
from engineering.checkpointing.checkpoint import capture_rng_states, restore_rng_states
from engineering.data.batches import with_last_flag
from engineering.data.step_iterator import takes_dataloader_iter
from engineering.data.transfer import batch_mover
from engineering.loop.evaluation_with_iterator import evaluation_steps_with_iterator
from engineering.loop.flush import flush_logged_metrics, metrics_to_floats
from engineering.loop.schedule import PREEMPTION_POLL_STEPS, signal_agreed
from engineering.loop.state import RunningStage, TrainerFn
from research import LightningModule

_STAGE_EVENTS = {
    prefix: {name: getattr(events, f"on_{prefix}_{name}")
             for name in ("start", "end", "epoch_start", "epoch_end", "batch_start", "batch_end")}
    for prefix in ("validation", "test", "predict")
}


def takes_batch_idx(step: Callable[..., Any]) -> bool:
    """Whether a step method accepts ``batch_idx`` (by name, through ``*args``, or as its second positional
    parameter): Lightning passes it only then, so ``def training_step(self, batch)`` works."""
    parameters = list(inspect.signature(step).parameters.values())
    if any(p.name == "batch_idx" or p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters) >= 2


def step_function(trainer: Any, action: str, step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` under the precision's forward context, timed as ``action`` by the profiler. Where neither
    applies (full precision, no profiler), ``step`` itself: the loops call it with no wrapper in between."""
    return trainer.profiler.timed(action, trainer.strategy.precision.wrap_step(step))


def run_sanity_check(trainer: Any) -> None:
    """A few validation batches before training; its metrics are dropped, and the random state is left as it
    found it (as Lightning does), so training draws the same numbers with or without it."""
    rng_states = capture_rng_states()
    trainer.state.stage = RunningStage.SANITY_CHECKING
    trainer.hooks(events.on_sanity_check_start)
    run_evaluation(trainer, RunningStage.SANITY_CHECKING, trainer.loaders.val, trainer.num_sanity_val_batches)
    trainer.hooks(events.on_sanity_check_end)
    trainer.results.reset()
    trainer.state.stage = RunningStage.TRAINING
    restore_rng_states(rng_states)


class SignalDuringValidation(Exception):
    """A stop signal arrived during validation in fit: the pass ends at the next batch, without its epoch end."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def run_validation_in_fit(trainer: Any) -> int:
    """Validate; returns the signal (agreed by all ranks) that cut the pass short, or 0 when it ran to the end."""
    try:
        with trainer.profiler.profile("validation"):
            run_evaluation(trainer, RunningStage.VALIDATING, trainer.loaders.val, trainer.num_val_batches)
    except SignalDuringValidation as cut_short:
        return cut_short.signum
    finally:
        trainer.results.stage = trainer.state.stage = RunningStage.TRAINING
    trainer.hooks.log_writer.drain()  # a validation is a natural pause: what it logged is on disk after it
    return 0


def run_evaluation(
    trainer: Any, stage: RunningStage, loaders: list[Any], limits: list[float]
) -> list[dict[str, float]]:
    """One pass over validation or test data, every hook of it without gradients (as in Lightning).

        on_{stage}_model_eval
        on_{stage}_start; on_{stage}_epoch_start
        for each dataloader, batch: batch → device; on_{stage}_batch_start; {stage}_step; on_{stage}_batch_end;
                                    on_step values to loggers;
                                    in fit, a stop signal? the pass ends here (SignalDuringValidation)
        epoch metrics; on_{stage}_epoch_end; metrics to loggers; on_{stage}_end; torchmetrics objects reset
        on_{stage}_model_train when overridden, else every submodule back in the mode it had
    Returns one dict of epoch metrics per dataloader.
    """
    with _no_grad(trainer):
        return _evaluate(trainer, stage, loaders, limits)


def _evaluate(trainer: Any, stage: RunningStage, loaders: list[Any], limits: list[float]) -> list[dict[str, float]]:
    module, results, hooks = trainer.lightning_module, trainer.results, trainer.hooks
    prefix = stage.hook_prefix
    stage_events = _STAGE_EVENTS[prefix]
    step_name = f"{prefix}_step"
    step = step_function(trainer, step_name, getattr(module, step_name))
    hooks.check_dataloader_idx((stage_events["batch_start"], stage_events["batch_end"]), len(loaders))
    store = RunningStage.TESTING if stage is RunningStage.TESTING else RunningStage.VALIDATING
    modes = {name: submodule.training for name, submodule in module.named_modules()}
    getattr(module, f"on_{prefix}_model_eval")()
    trainer.state.stage, results.stage = stage, store
    results.start_epoch(store)
    hooks(stage_events["start"])
    hooks(stage_events["epoch_start"])
    # Inside fit, a preemption signal or Ctrl-C is answered between validation batches (one read each).
    watches_signals = stage is RunningStage.VALIDATING and trainer.state.fn is TrainerFn.FITTING
    with trainer.profiler.profile(f"run_{prefix}_evaluation"), _modes_back_if_cut_short(module, prefix, modes, results):
        if takes_dataloader_iter(getattr(module, step_name)):  # the step reads its own batches
            results.hook = step_name
            evaluation_steps_with_iterator(trainer, stage_events, step, loaders, limits,
                                           lambda outputs, started_in, _: _flush_step_values(trainer, started_in))
        else:
            _run_evaluation_batches(trainer, stage_events, step, step_name, loaders, limits, watches_signals)
    results.dataloader_idx = None
    results.end_epoch(store)
    hooks(stage_events["epoch_end"])
    flush_logged_metrics(trainer, "epoch")
    hooks(stage_events["end"])
    results.reset_metric_objects(store)
    _leave_eval_mode(module, prefix, modes)
    trainer.state.validation_ended = time.monotonic()  # a duration val_check_interval counts from here
    return _metrics_per_dataloader(results, store, len(loaders))


@contextlib.contextmanager
def _modes_back_if_cut_short(module: Any, prefix: str, modes: dict[str, bool], results: Any) -> Iterator[None]:
    try:
        yield
    except SignalDuringValidation:
        results.dataloader_idx = None
        _leave_eval_mode(module, prefix, modes)
        raise


def _run_evaluation_batches(trainer: Any, stage_events: dict[str, Any], step: Callable[..., Any], step_name: str,
                            loaders: list[Any], limits: list[float], watches_signals: bool) -> None:
    """Each loader's batches in turn: batch → device, batch start, the step, batch end, step values out; in fit, a
    stop signal ends the pass (SignalDuringValidation)."""
    results, hooks = trainer.results, trainer.hooks
    with_batch_idx = takes_batch_idx(getattr(trainer.lightning_module, step_name))
    several = len(loaders) > 1
    move = batch_mover(trainer)
    start_heard, end_heard = hooks.heard(stage_events["batch_start"]), hooks.heard(stage_events["batch_end"])
    several_ranks = trainer.strategy.world_size > 1  # they vote on signals; one process only asks itself
    for dataloader_idx, (loader, limit) in enumerate(zip(loaders, limits)):
        results.dataloader_idx = dataloader_idx if several else None
        for batch_idx, batch, _ in with_last_flag(trainer.strategy.process_dataloader(loader), limit):
            batch = move(batch, dataloader_idx)
            results.batch = batch
            if start_heard:  # an event nobody hears costs not even a call
                hooks(stage_events["batch_start"], batch=batch, batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            results.hook = step_name
            arguments = (batch, batch_idx) if with_batch_idx else (batch,)
            outputs = step(*arguments, dataloader_idx) if several else step(*arguments)
            if end_heard:
                hooks(stage_events["batch_end"], outputs=outputs, batch=batch, batch_idx=batch_idx,
                      dataloader_idx=dataloader_idx)
            _flush_step_values(trainer, dataloader_idx)
            if (watches_signals and (several_ranks or trainer.received_signal)
                    and (signum := signal_agreed(trainer, PREEMPTION_POLL_STEPS, batch_idx + 1))):
                raise SignalDuringValidation(signum)


def _flush_step_values(trainer: Any, dataloader_idx: int) -> None:
    if not trainer.sanity_checking:  # on_step values go out at once, without an epoch key
        log_step = trainer.results.next_evaluation_step(dataloader_idx)
        if trainer.results.has_unlogged_steps:
            flush_logged_metrics(trainer, "step", step=log_step, with_epoch=False)


def _leave_eval_mode(module: Any, prefix: str, modes: dict[str, bool]) -> None:
    """An overridden ``on_{prefix}_model_train`` decides; otherwise every submodule gets back the mode it had
    before evaluation (a frozen backbone stays in eval mode), as in Lightning."""
    hook = f"on_{prefix}_model_train"
    if defines(module, LightningModule, hook):
        getattr(module, hook)()
        return
    for name, submodule in module.named_modules():
        if name in modes:
            submodule.training = modes[name]  # this module alone: train(mode) would also set its children


def _metrics_per_dataloader(results: Any, store: RunningStage, count: int) -> list[dict[str, float]]:
    logged = results.epoch_keys(store)
    values = metrics_to_floats({key: results.callback_metrics[key] for key in logged})
    per_loader = []
    for dataloader_idx in range(count):
        suffix = f"/dataloader_idx_{dataloader_idx}"
        per_loader.append(
            {key: value for key, value in values.items() if "/dataloader_idx_" not in key or key.endswith(suffix)}
        )
    return per_loader


def _no_grad(trainer: Any) -> Any:
    """Inference mode where the Trainer and strategy allow it; within fit, no_grad, as Lightning validates there."""
    use_inference_mode = (trainer.inference_mode and trainer.strategy.supports_inference_mode
                          and trainer.state.fn is not TrainerFn.FITTING)
    return torch.inference_mode() if use_inference_mode else torch.no_grad()


def run_predict(trainer: Any, loaders: list[Any], limits: list[float], keep: bool) -> list[Any]:
    """on_predict_start → per batch: on_predict_batch_start, predict_step, on_predict_batch_end → on_predict_end."""
    with _no_grad(trainer):  # every hook of the pass too, as in Lightning
        return _predict(trainer, loaders, limits, keep)


def _predict(trainer: Any, loaders: list[Any], limits: list[float], keep: bool) -> list[Any]:
    module, hooks = trainer.lightning_module, trainer.hooks
    stage_events = _STAGE_EVENTS["predict"]
    several = len(loaders) > 1
    module.on_predict_model_eval()
    trainer.state.stage = RunningStage.PREDICTING
    hooks(stage_events["start"])
    hooks(stage_events["epoch_start"])
    predictions: list[list[Any]] = [[] for _ in loaders]
    step = step_function(trainer, "predict_step", module.predict_step)
    hooks.check_dataloader_idx((stage_events["batch_start"], stage_events["batch_end"]), len(loaders))

    def kept(outputs: Any, _: int, dataloader_idx: int) -> None:
        if keep:
            predictions[dataloader_idx].append(outputs)

    if takes_dataloader_iter(module.predict_step):  # the step reads its own batches
        evaluation_steps_with_iterator(trainer, stage_events, step, loaders, limits, kept)
    else:
        _run_predict_batches(trainer, stage_events, step, loaders, limits, kept)
    hooks(stage_events["epoch_end"])
    hooks(stage_events["end"])
    return predictions if several else predictions[0]


def _run_predict_batches(trainer: Any, stage_events: dict[str, Any], step: Callable[..., Any], loaders: list[Any],
                         limits: list[float], kept: Callable[[Any, int, int], None]) -> None:
    hooks, several = trainer.hooks, len(loaders) > 1
    with_batch_idx = takes_batch_idx(trainer.lightning_module.predict_step)
    move = batch_mover(trainer)
    for dataloader_idx, (loader, limit) in enumerate(zip(loaders, limits)):
        for batch_idx, batch, _ in with_last_flag(trainer.strategy.process_dataloader(loader), limit):
            batch = move(batch, dataloader_idx)
            hooks(stage_events["batch_start"], batch=batch, batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            arguments = (batch, batch_idx) if with_batch_idx else (batch,)
            outputs = step(*arguments, dataloader_idx) if several else step(*arguments)
            kept(outputs, dataloader_idx, dataloader_idx)
            hooks(stage_events["batch_end"], outputs=outputs, batch=batch, batch_idx=batch_idx,
                  dataloader_idx=dataloader_idx)
