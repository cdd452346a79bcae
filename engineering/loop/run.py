"""One run of any entry point (fit, validate, test, predict), set up and torn down in one place.

    run(trainer, fn, model, ...):
        attach the model (and datamodule) to the trainer; global settings (deterministic, benchmark)
        strategy.setup_environment; the hook runner connects the subscribers
        prepare_data (once per node) → datamodule.setup → setup → configure_model → model to the device
        the stage:  fit → prepare_fit, then loop/fit.py run_fit
                    validate / test → loop/evaluation.py run_evaluation;  predict → run_predict
        on error: on_exception, then re-raise; on Ctrl-C (KeyboardInterrupt): one line, on_exception, teardown,
                  then SystemExit(1), as Lightning
        finally: teardown, subscribers disconnected, global settings restored
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from engineering import events
from engineering.bus.runner import HookRunner
from engineering.bus.subscribers import add_module_callbacks
from engineering.checkpointing.checkpoint import (
    load_checkpoint, preemption_signals, restore, restore_train_loader_state,
)
from engineering.checkpointing.ckpt_path import resolve_checkpoint_path
from engineering.data.batches import distributed_sampler_seed, resumable_sampler
from engineering.data.loaders import set_up_evaluation_loaders, set_up_fit_loaders
from engineering.data.step_iterator import warn_about_dataloader_iter
from engineering.errors import MisconfigurationError
from engineering.loop import advice, evaluation, fit, schedule
from engineering.loop.results import Results
from engineering.loop.state import Loaders, RunningStage, TrainerFn, TrainerState, TrainerStatus
from engineering.optimization.optimizers import set_up_optimizers
from engineering.utilities import rank_zero_only
from research import LightningDataModule, LightningModule
from research.checkpoint_io import load_weights


def run(trainer: Any, fn: TrainerFn, model: Any, datamodule: Any, ckpt_path: Any, weights_only: bool,
        **sources: Any) -> Any:
    """Run entry point ``fn``; ``sources`` are the loaders it was given (train/val, evaluate, predict + keep)."""
    if not isinstance(model, LightningModule):
        raise TypeError(f"Trainer.{fn.value} needs a LightningModule, got {type(model).__name__}.")
    if datamodule is not None and not isinstance(datamodule, LightningDataModule):
        raise TypeError(f"datamodule must be a LightningDataModule, got {type(datamodule).__name__}.")
    advice.require_evaluation_step(fn, model)
    advice.drop_unpicklable_hyperparameters(model)
    warn_about_dataloader_iter(fn, model)
    if trainer.strategy.spawns_processes:
        return run_spawned(trainer, fn, model, datamodule, ckpt_path, weights_only, sources)
    checkpoint_path = resolve_checkpoint_path(trainer, ckpt_path, fn.value)
    trainer.ckpt_path = str(checkpoint_path) if checkpoint_path is not None else None
    if fn is TrainerFn.FITTING:
        _start_fit_progress(trainer, model, checkpoint_path)
    trainer.lightning_module, trainer.datamodule = model, datamodule
    model.trainer = trainer
    if datamodule is not None:
        datamodule.trainer = trainer
    trainer.state = TrainerState(TrainerStatus.RUNNING, fn)
    trainer.results, trainer.loaders = Results(trainer.strategy.reduce), Loaders()
    previous_settings = _apply_global_settings(trainer.deterministic, trainer.benchmark)
    try:
        trainer.strategy.setup_environment()
        if fn is TrainerFn.FITTING:
            schedule.settle_epoch_limits(trainer)
        if trainer.world_size > 1:  # every rank writes where rank 0's logger says
            rank_zero_only.rank = trainer.global_rank  # as Lightning's strategies: @rank_zero_only follows the job
            trainer.shared_log_dir = trainer.strategy.broadcast(trainer.log_dir)
        add_module_callbacks(trainer, model)
        trainer.hooks = HookRunner(trainer, model)
        _set_up(trainer, fn, model, datamodule)
        signals = preemption_signals(trainer) if fn is TrainerFn.FITTING else contextlib.nullcontext()
        # Anomaly mode is entered only when asked for: even set to False, the context slows every backward.
        anomaly = torch.autograd.set_detect_anomaly(True) if trainer.detect_anomaly else contextlib.nullcontext()
        with signals, anomaly:
            if fn is TrainerFn.FITTING:
                resumed_rng = prepare_fit(trainer, model, datamodule, checkpoint_path, weights_only, **sources)
                with torch.enable_grad():  # training computes gradients even when fit is called under no_grad
                    result = fit.run_fit(trainer, resumed_rng)
            else:
                result = _run_evaluation_stage(trainer, fn, model, datamodule, checkpoint_path, weights_only, **sources)
        trainer.state.status = TrainerStatus.FINISHED
        return result
    except BaseException as error:
        if _announce_failure(trainer, error):  # Ctrl-C
            raise SystemExit(1) from None  # after teardown (below), as Lightning: status 1, no traceback
        explained = trainer.strategy.explain_failure(error)
        try:
            if explained is not error:
                raise explained from error
            raise
        finally:
            # A local holding the exception ties it to its own traceback, and the traceback to every frame of the
            # loop: the batches, loader workers and tensors in them would live on until the garbage collector ran.
            del explained
    finally:
        _tear_down(trainer, fn, model, datamodule, previous_settings)


def _announce_failure(trainer: Any, error: BaseException) -> bool:
    """The run failed: its status, Lightning's line for Ctrl-C, ``on_exception``. Returns whether it was Ctrl-C."""
    trainer.state.status = TrainerStatus.INTERRUPTED
    interrupted = isinstance(error, KeyboardInterrupt)
    if interrupted and trainer.is_global_zero:  # Lightning's line, instead of a traceback through the loops
        print("\nDetected KeyboardInterrupt, attempting graceful shutdown ...", flush=True)
    trainer.emit(events.on_exception, exception=error)
    return interrupted


def _start_fit_progress(trainer: Any, model: Any, checkpoint_path: Path | None) -> None:
    """A fit carries on from the Trainer's progress, as in Lightning, but not from an earlier fit's stop request."""
    progress = trainer.progress
    progress.should_stop, progress.stop_reason = False, ""
    earlier = trainer.lightning_module
    if checkpoint_path is None and earlier is not None and earlier is not model and progress.global_step:
        advice.fit_continues_for_another_model(trainer, model)


def _set_up(trainer: Any, fn: TrainerFn, model: Any, datamodule: Any) -> None:
    """prepare_data → datamodule.setup → setup (callbacks, then the module) → configure_model → onto the device."""
    hook_stage = fn.value
    if datamodule is not None and _prepares_data(trainer, datamodule):
        datamodule.prepare_data()
    if _prepares_data(trainer, model):
        model.prepare_data()
    trainer.strategy.barrier("prepare_data")  # nobody reads the data before it is ready
    if datamodule is not None:
        datamodule.setup(hook_stage)
    trainer.hooks(events.setup, stage=hook_stage)
    trainer.profiler.setup(hook_stage, trainer.log_dir)
    model.configure_model()
    trainer.strategy.setup_module(model)


def _prepares_data(trainer: Any, owner: Any) -> bool:
    """prepare_data runs once per node (local rank 0), or once in all when prepare_data_per_node is False."""
    return trainer.local_rank == 0 if getattr(owner, "prepare_data_per_node", True) else trainer.global_rank == 0


def model_or_previous(trainer: Any, model: Any, fn: TrainerFn, ckpt_path: Any) -> tuple[Any, Any]:
    """The model and checkpoint a run uses. Without a model, the previous run's; and, as in Lightning, the best
    checkpoint its ModelCheckpoint saved when no ckpt_path says otherwise."""
    if model is not None:
        return model, ckpt_path
    if trainer.lightning_module is None:
        raise MisconfigurationError(f"Trainer.{fn.value}() needs a model: pass it as the first argument.")
    if ckpt_path is None:
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        warnings.warn(
            f"Trainer.{fn.value}() was called without a model: it uses "
            + (f"the best checkpoint of the previous run, {best}." if best else
               "the previous run's model with its current weights (no checkpoint was saved).")
            + " Pass ckpt_path ('best', 'last' or a path) to choose, or the model to use its weights as they are.",
            stacklevel=3,
        )
        ckpt_path = "best" if best else None
    return trainer.lightning_module, ckpt_path


def prepare_fit(trainer: Any, model: Any, datamodule: Any, checkpoint_path: Path | None, weights_only: bool,
                train: Any = None, val: Any = None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Optimizers, the checkpoint's state, loaders; returns the checkpoint's random states: those it was taken
    with and, mid-epoch, those the epoch's data order was drawn from. As in Lightning, the loaders are asked for
    once the checkpoint is back (``current_epoch`` is its epoch), unless configure_optimizers needed them first."""
    trainer.pending_fit_sources = (datamodule, train, val)
    try:
        set_up_optimizers(trainer, model)  # configure_optimizers may read estimated_stepping_batches
    finally:
        trainer.pending_fit_sources = None
    checkpoint = load_checkpoint(checkpoint_path, "cpu", weights_only) if checkpoint_path is not None else {}
    if checkpoint:
        restore(trainer, checkpoint)
        trainer.loaders.resumed_passes = checkpoint.get("train_loader_passes")
    if trainer.train_dataloader is None:
        set_up_fit_loaders(trainer, model, datamodule, train, val)
    if checkpoint:
        restore_train_loader_state(trainer, checkpoint)
        advice.say_resumed(trainer, TrainerFn.FITTING, checkpoint_path)
    loaders = trainer.loaders
    if loaders.val and advice.validation_step_missing(model):  # Lightning skips the validation loop, saying so
        loaders.val, loaders.num_val_batches, loaders.num_sanity_val_batches = [], [], []
        loaders.val_as_given = None
    elif not loaders.val and trainer.is_global_zero:
        advice.warn_validation_without_loaders(model)
    loaders.train_loaded_epoch = trainer.progress.epoch  # reload_dataloaders_every_n_epochs counts from here
    if trainer.progress.sampler_seed is None and resumable_sampler(trainer.train_dataloader) is not None:
        trainer.progress.sampler_seed = distributed_sampler_seed()
    if trainer.is_global_zero:
        hyperparameters = hyperparameters_to_log(model, datamodule)
        if hyperparameters is not None:  # as in Lightning, an empty record too: loggers write an empty hparams.yaml
            trainer.emit(events.log_hyperparams, params=hyperparameters)
        for logger in trainer.loggers:
            logger.log_graph(model)
    trainer.state.stage = trainer.results.stage = RunningStage.TRAINING
    return checkpoint.get("rng_states"), checkpoint.get("epoch_rng_states")


def hyperparameters_to_log(model: Any, datamodule: Any) -> dict[str, Any] | None:
    """What the module's and the datamodule's ``save_hyperparameters`` recorded (unless called with
    ``logger=False``), merged as Lightning logs them; a name both record with different values is an error."""
    from_model = dict(model.hparams_initial) if getattr(model, "_log_hyperparams", False) else None
    from_data = None
    if datamodule is not None and getattr(datamodule, "_log_hyperparams", False):
        from_data = dict(datamodule.hparams_initial)
    if from_model is None or from_data is None:
        return from_model if from_model is not None else from_data
    clashing = sorted(key for key in from_model.keys() & from_data.keys() if not _same(from_model[key], from_data[key]))
    if clashing:
        raise RuntimeError(
            f"Error while merging hparams: the keys {clashing} are present in both the LightningModule's and "
            "LightningDataModule's hparams but have different values. Rename one of them, or pass it in "
            "save_hyperparameters(ignore=[...]) on one side."
        )
    return {**from_model, **from_data}


def _same(first: Any, second: Any) -> bool:
    if type(first) is not type(second):
        return False
    if isinstance(first, torch.Tensor):
        return first is second
    return bool(first == second)


def _run_evaluation_stage(trainer: Any, fn: TrainerFn, model: Any, datamodule: Any, checkpoint_path: Path | None,
                          weights_only: bool, evaluate: Any = None, predict: Any = None, keep: bool = True) -> Any:
    if checkpoint_path is not None:
        checkpoint = load_checkpoint(checkpoint_path, "cpu", weights_only)
        trainer.emit(events.on_load_checkpoint, checkpoint=checkpoint)
        model.on_load_checkpoint(checkpoint)
        load_weights(model, checkpoint["state_dict"])
        advice.say_resumed(trainer, fn, checkpoint_path)
    set_up_evaluation_loaders(trainer, fn, model, datamodule, predict if fn is TrainerFn.PREDICTING else evaluate)
    loaders = trainer.loaders
    if fn is TrainerFn.PREDICTING:
        return evaluation.run_predict(trainer, loaders.predict, loaders.num_predict_batches, keep)
    if fn is TrainerFn.VALIDATING:
        return evaluation.run_evaluation(trainer, RunningStage.VALIDATING, loaders.val, loaders.num_val_batches)
    return evaluation.run_evaluation(trainer, RunningStage.TESTING, loaders.test, loaders.num_test_batches)


def _tear_down(trainer: Any, fn: TrainerFn, model: Any, datamodule: Any, previous_settings: tuple[Any, ...]) -> None:
    """teardown (datamodule, callbacks, module), profiler, strategy, loggers; then leave the bus as it was."""
    finished = trainer.state.status is TrainerStatus.FINISHED
    try:
        try:
            if datamodule is not None:
                datamodule.teardown(fn.value)
            if trainer.hooks is not None:
                trainer.hooks(events.teardown, stage=fn.value)
        finally:
            trainer.profiler.describe()
            trainer.profiler.teardown(fn.value)
            trainer.strategy.teardown()
            if trainer.loaders.train_streams is not None:  # several training loaders: their workers stop here
                trainer.loaders.train_streams.stop_workers()
            _finalize_loggers(trainer, finished)
    finally:
        if not finished:
            trainer.strategy.close(failed=True)
        if trainer.hooks is not None:
            trainer.hooks.disconnect()
        trainer.hooks = None
        _restore_global_settings(previous_settings)
        trainer.state.stage = trainer.results.hook = None


def _finalize_loggers(trainer: Any, finished: bool) -> None:
    try:
        if trainer.hooks is not None:
            trainer.hooks.log_writer.close()  # every queued value is written before the loggers close their files
    finally:
        for logger in trainer.loggers:
            logger.finalize("success" if finished else "failed")


def run_spawned(trainer: Any, fn: TrainerFn, model: Any, datamodule: Any, ckpt_path: Any, weights_only: bool,
                sources: dict[str, Any]) -> Any:
    """ddp_spawn: run the stage in one fresh process per device; take rank 0's weights and metrics back."""
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    store = trainer.strategy.host_store(for_spawned_ranks=True)  # open until every rank has exited
    # Plain pickle bytes: torch.multiprocessing would pass tensors in shared memory, and every process
    # would then train the same parameters.
    job = pickle.dumps((trainer, (fn, model, datamodule, ckpt_path, weights_only, sources)))
    mp.start_processes(_run_as_rank, args=(job, queue), nprocs=trainer.strategy.devices_per_node, start_method="spawn")
    # Bytes, not tensors: shared-memory tensors die with the process that sent them, which has exited.
    outcome = torch.load(io.BytesIO(queue.get()), weights_only=False)  # our own child wrote them
    del store
    trainer.lightning_module, trainer.datamodule = model, datamodule
    model.trainer = trainer
    model.load_state_dict(outcome["state_dict"])
    trainer.progress = outcome["progress"]
    trainer.results = Results(trainer.strategy.reduce)
    trainer.results.callback_metrics.update(outcome["callback_metrics"])
    for callback, (best, last) in zip(trainer.checkpoint_callbacks, outcome["checkpoint_paths"]):
        callback.best_model_path, callback.last_model_path = best, last
    return outcome["result"]


def _run_as_rank(local_rank: int, job: bytes, queue: Any) -> None:
    """A ddp_spawn process: become ``local_rank``, run the stage, and hand rank 0's outcome back."""
    trainer, (fn, model, datamodule, ckpt_path, weights_only, sources) = pickle.loads(job)
    trainer.strategy.become_rank(local_rank)
    result = run(trainer, fn, model, datamodule, ckpt_path, weights_only, **sources)
    if trainer.is_global_zero:
        outcome = io.BytesIO()
        torch.save({
            "result": result,
            "state_dict": {key: value.cpu() for key, value in model.state_dict().items()},
            "progress": trainer.progress,
            "callback_metrics": {key: value.cpu() for key, value in trainer.callback_metrics.items()},
            "checkpoint_paths": [(c.best_model_path, c.last_model_path) for c in trainer.checkpoint_callbacks],
        }, outcome)
        queue.put(outcome.getvalue())


def _apply_global_settings(deterministic: Any, benchmark: Any) -> tuple[Any, ...]:
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    if deterministic is not None:
        torch.use_deterministic_algorithms(bool(deterministic), warn_only=deterministic == "warn")
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
    if benchmark is not None:
        torch.backends.cudnn.benchmark = benchmark
    elif deterministic:
        torch.backends.cudnn.benchmark = False
    return previous


def _restore_global_settings(previous: tuple[Any, ...]) -> None:
    enabled, warn_only, benchmark, workspace = previous
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark
    if workspace is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


def print_results(fn: TrainerFn, results: list[dict[str, float]]) -> None:
    """The table ``validate``/``test`` print: one row per metric, one column per dataloader."""
    rows = sorted({key for metrics in results for key in metrics})
    if not rows:
        return
    title = "Validate metric" if fn is TrainerFn.VALIDATING else "Test metric"
    headers = [title] + [f"DataLoader {index}" for index in range(len(results))]
    table = [[key] + [f"{metrics[key]:.6g}" if key in metrics else "" for metrics in results] for key in rows]
    widths = [max(len(str(row[column])) for row in [headers] + table) for column in range(len(headers))]
    rule = "─" * (sum(widths) + 3 * (len(widths) - 1))
    lines = [rule, "   ".join(h.ljust(w) for h, w in zip(headers, widths)), rule]
    lines += ["   ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in table]
    print("\n".join(lines + [rule]))
