"""The Trainer: flags, the fit/validate/test/predict entry points, and the state users read."""

from __future__ import annotations

import contextlib
import datetime
import io
import math
import os
import pickle
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from engineering import events, flags, loops, optim, subscribers
from engineering.accelerators import resolve_accelerator, resolve_devices
from engineering.checkpoint import (
    build_checkpoint, load_checkpoint, preemption_signals, resolve_checkpoint_path, restore, save_atomically,
)
from engineering.data import (
    as_loader_list, limited_batches, new_sampler_seed, resumable_sampler, with_resumable_sampler, without_shuffle,
)
from engineering.events import Callback
from engineering.loggers import Logger
from engineering.logging import MisconfigurationError, Results
from engineering.model_checkpoint import ModelCheckpoint
from engineering.precision import normalize_precision
from engineering.profiler import Profiler
from engineering.strategies import SingleDeviceStrategy, create_strategy
from research import LightningDataModule, LightningModule
from research.checkpoint_io import load_weights

class Trainer:
    """Runs a LightningModule: ``fit``, ``validate``, ``test``, ``predict``. Flags mean what Lightning's mean.

    The descriptions below are also the ``tribus fit --help`` text and the flag table of docs/engineering.md.

    Args:
        accelerator: `"cpu"`, `"gpu"`/`"cuda"`, `"mps"`, `"tpu"`/`"xla"`, or `"auto"` (CUDA if available, then MPS,
            else the CPU). Asking for one that is not there fails at once, listing what is.
        strategy: `"auto"` (one device: `single_device`; several: `ddp`; XLA: `xla`), `"single_device"`, `"ddp"`,
            `"ddp_spawn"`, `"ddp_find_unused_parameters_true"`, `"fsdp"`, `"xla"`, or a strategy object.
        devices: a count, `-1` (all), a list of indices, a string `"0,1"`, or `"auto"` (all GPUs; one CPU process).
            More than one device means one process per device.
        num_nodes: machines taking part; the process count is `devices × num_nodes`.
        precision: `"32-true"`, `"64-true"`, `"16-mixed"`, `"bf16-mixed"`, `"16-true"`, `"bf16-true"`; also `32`,
            `64`, `16`, `"bf16"`. `"16-mixed"` on the CPU autocasts to bfloat16 and warns.
        logger: `None`/`True`: the default logger (TensorBoard when installed, else CSV) under `default_root_dir`;
            `False`: none; a `Logger` or a list of them.
        callbacks: a `Callback` or a list; they hear events in list order, before discovered subscribers, with
            checkpointing last.
        fast_dev_run: `True` (1) or `n`: run `n` training and `n` validation batches (and `n` test/predict batches),
            one epoch, no sanity check, no logger, no checkpoints. A smoke test.
        max_epochs: stop after this many epochs; `-1` never. `None` means 1000 when neither `max_steps` nor
            `max_time` is set, else unlimited.
        min_epochs: a stop request (`trainer.should_stop`, EarlyStopping) waits until this many epochs ran.
        max_steps: stop after this many optimizer steps (accumulated batches count once); `-1` never.
        min_steps: a stop request waits until this many optimizer steps ran.
        max_time: stop after this much training time (from `on_train_start`), checked after every batch:
            `"DD:HH:MM:SS"`, a `datetime.timedelta` or a dict.
        limit_train_batches: an int (batches) or a fraction of each training epoch.
        limit_val_batches: the same for validation; `0` turns validation off.
        limit_test_batches: the same for `trainer.test`.
        limit_predict_batches: the same for `trainer.predict`.
        overfit_batches: an int or fraction: train and validate on that many batches only, and read the training
            loader in order.
        val_check_interval: a fraction of an epoch (`0.25`: four validations an epoch) or an int number of training
            batches. With `check_val_every_n_epoch=None`, an int counts batches across epochs.
        check_val_every_n_epoch: validate in every n-th epoch; `None` leaves it to `val_check_interval` alone.
        num_sanity_val_steps: validation batches to run before training, to catch bugs early; their metrics are
            dropped. `-1` all, `0` none. Skipped when resuming.
        log_every_n_steps: send step values to the loggers every n optimizer steps.
        enable_checkpointing: add a `ModelCheckpoint()` (the latest weights after every epoch, in
            `<log_dir>/checkpoints`) when `callbacks` has none.
        enable_progress_bar: the default progress bar (`TQDMProgressBar`, from `auxiliary` through the discovery
            door).
        enable_model_summary: the layer table printed when fit starts (`ModelSummary`).
        accumulate_grad_batches: step the optimizer every n batches, with the loss divided by n; the last batch of
            an epoch closes its window. Automatic optimization only.
        gradient_clip_val: clip gradients (after unscaling) to this value before each step; `None` or `0` does not
            clip. Automatic optimization only.
        gradient_clip_algorithm: `"norm"` (`clip_grad_norm_`) or `"value"` (`clip_grad_value_`).
        deterministic: `True` / `"warn"` / `False`: `torch.use_deterministic_algorithms` for the duration of each
            run (also sets `CUBLAS_WORKSPACE_CONFIG` and turns cuDNN benchmarking off unless `benchmark` says
            otherwise). `None` leaves torch's setting. Restored when the run ends.
        benchmark: `torch.backends.cudnn.benchmark` for the duration of each run; `None` leaves it.
        inference_mode: evaluate under `torch.inference_mode()`; `False` uses `torch.no_grad()`.
        use_distributed_sampler: replace a plain training `DataLoader`'s sampler by a `ResumableSampler` (shuffled
            or not, as the loader was; sharded across processes), so that order and resume are exact. `False` leaves
            samplers alone.
        sync_batchnorm: with DDP or FSDP, turn BatchNorm layers into SyncBatchNorm.
        profiler: `"simple"`, `"advanced"`, `"pytorch"`, `True` (simple), any name registered under the entry-point
            group `tribus.profilers`, or a `Profiler` object.
        detect_anomaly: `torch.autograd.set_detect_anomaly` for the duration of each run (slow; for debugging NaNs).
        barebones: the bare loop: no discovered subscribers, logger, checkpointing, progress bar, summary or sanity
            check, and `self.log` does nothing. Turning one of those on as well is an error.
        default_root_dir: where the default logger, the default checkpoints and preemption checkpoints
            (`hpc_ckpt_<n>.ckpt`) go.
    """

    def __init__(
        self,
        *,
        accelerator: str = "auto",
        strategy: str | SingleDeviceStrategy = "auto",
        devices: int | str | list[int] = "auto",
        num_nodes: int = 1,
        precision: int | str | None = None,
        logger: Logger | Iterable[Logger] | bool | None = None,
        callbacks: Callback | list[Callback] | None = None,
        fast_dev_run: bool | int = False,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int = -1,
        min_steps: int | None = None,
        max_time: str | datetime.timedelta | dict[str, int] | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        overfit_batches: int | float = 0.0,
        val_check_interval: int | float | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None,
        benchmark: bool | None = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        sync_batchnorm: bool = False,
        profiler: Profiler | str | bool | None = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        default_root_dir: str | os.PathLike | None = None,
    ) -> None:
        self.barebones = flags.check_bool("barebones", barebones)
        if barebones:
            flags.refuse_with_barebones(
                enable_checkpointing=enable_checkpointing, enable_progress_bar=enable_progress_bar,
                enable_model_summary=enable_model_summary, logger=logger, profiler=profiler,
            )
            enable_checkpointing = enable_progress_bar = enable_model_summary = logger = False
            num_sanity_val_steps = 0

        self.fast_dev_run = flags.check_fast_dev_run(fast_dev_run)
        self.default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else os.getcwd()
        self.enable_progress_bar = flags.check_bool("enable_progress_bar", True if enable_progress_bar is None else enable_progress_bar)
        self.enable_model_summary = flags.check_bool("enable_model_summary", True if enable_model_summary is None else enable_model_summary)
        self.enable_checkpointing = flags.check_bool("enable_checkpointing", True if enable_checkpointing is None else enable_checkpointing)

        # -- loop limits --------------------------------------------------------------------------
        self.max_steps = flags.check_int("max_steps", max_steps, minimum=-1)
        self.min_steps = None if min_steps is None else flags.check_int("min_steps", min_steps, minimum=0)
        self.min_epochs = None if min_epochs is None else flags.check_int("min_epochs", min_epochs, minimum=0)
        if max_epochs is None:
            max_epochs = 1000 if max_steps == -1 and max_time is None else -1
        self.max_epochs = flags.check_int("max_epochs", max_epochs, minimum=-1)
        self.max_time = flags.parse_max_time(max_time)
        self.limit_train_batches = flags.check_limit("limit_train_batches", limit_train_batches)
        self.limit_val_batches = flags.check_limit("limit_val_batches", limit_val_batches)
        self.limit_test_batches = flags.check_limit("limit_test_batches", limit_test_batches)
        self.limit_predict_batches = flags.check_limit("limit_predict_batches", limit_predict_batches)
        self.overfit_batches = flags.check_limit("overfit_batches", overfit_batches)
        self.val_check_interval = flags.check_val_check_interval(val_check_interval)
        if check_val_every_n_epoch is not None:
            flags.check_int("check_val_every_n_epoch", check_val_every_n_epoch, minimum=1)
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.num_sanity_val_steps = flags.check_int(
            "num_sanity_val_steps", 2 if num_sanity_val_steps is None else num_sanity_val_steps, minimum=-1
        )
        self.log_every_n_steps = flags.check_int("log_every_n_steps", 50 if log_every_n_steps is None else log_every_n_steps, minimum=1)
        self.accumulate_grad_batches = flags.check_int("accumulate_grad_batches", accumulate_grad_batches, minimum=1)
        if gradient_clip_val is not None and (isinstance(gradient_clip_val, bool) or not isinstance(gradient_clip_val, (int, float)) or gradient_clip_val < 0):
            raise MisconfigurationError(f"gradient_clip_val={gradient_clip_val!r} must be a non-negative number or None.")
        self.gradient_clip_val = gradient_clip_val
        if gradient_clip_algorithm not in (None, "norm", "value"):
            raise MisconfigurationError(
                f"gradient_clip_algorithm={gradient_clip_algorithm!r} is not supported; use 'norm' or 'value'."
            )
        self.gradient_clip_algorithm = gradient_clip_algorithm or "norm"
        if self.fast_dev_run:
            runs = self.fast_dev_run
            self.limit_train_batches = self.limit_val_batches = runs
            self.limit_test_batches = self.limit_predict_batches = runs
            self.max_epochs, self.max_steps, self.num_sanity_val_steps = 1, runs, 0
            self.val_check_interval, self.check_val_every_n_epoch = 1.0, 1
            logger, self.enable_checkpointing = False, False
        if self.overfit_batches:
            self.limit_train_batches = self.limit_val_batches = self.overfit_batches

        # -- numerics and hardware ----------------------------------------------------------------
        if deterministic not in (None, True, False, "warn"):
            raise MisconfigurationError(f"deterministic={deterministic!r}; use True, False, 'warn' or None.")
        self.deterministic = deterministic
        self.benchmark = benchmark
        self.inference_mode = flags.check_bool("inference_mode", inference_mode)
        self.detect_anomaly = flags.check_bool("detect_anomaly", detect_anomaly)
        self.use_distributed_sampler = use_distributed_sampler
        self.precision = normalize_precision("32-true" if precision is None else precision)
        self.num_nodes = flags.check_int("num_nodes", num_nodes, minimum=1)
        self.accelerator = resolve_accelerator(accelerator)
        self.sync_batchnorm = flags.check_bool("sync_batchnorm", sync_batchnorm)
        self.strategy = create_strategy(
            strategy, self.accelerator, resolve_devices(self.accelerator, devices), self.num_nodes, self.precision,
            sync_batchnorm=self.sync_batchnorm,
        )
        self.strategy.trainer = self

        # -- subscribers ---------------------------------------------------------------------------
        self.profiler = flags.resolve_profiler(profiler)
        self.callbacks: list[Callback] = flags.as_list(callbacks, "callbacks", Callback)
        self.loggers: list[Logger] = [] if logger in (None, True, False) else flags.as_list(logger, "logger", Logger)
        if self.enable_checkpointing and not any(isinstance(c, ModelCheckpoint) for c in self.callbacks):
            self.callbacks.append(ModelCheckpoint())
        if not barebones:
            subscribers.attach_discovered(self, keep_loggers=logger in (None, True))
        subscribers.order_callbacks(self.callbacks)

        # -- run state -----------------------------------------------------------------------------
        self.progress = loops.Progress()
        self.results = Results(self.strategy.reduce)
        self.lightning_module: LightningModule | None = None
        self.datamodule: LightningDataModule | None = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lightning_optimizers: list[optim.LightningOptimizer] = []
        self.lr_scheduler_configs: list[optim.LRSchedulerConfig] = []
        self.train_dataloader: Any = None
        self.val_dataloaders: list[Any] = []
        self.test_dataloaders: list[Any] = []
        self.predict_dataloaders: list[Any] = []
        self.num_training_batches: float = math.inf
        self.num_val_batches: list[float] = []
        self.num_sanity_val_batches: list[float] = []
        self.num_test_batches: list[float] = []
        self.num_predict_batches: list[float] = []
        self.val_check_batch: float = math.inf
        self.sanity_checking = False
        self.stage: str | None = None
        self.status = "initializing"
        self.ckpt_path: str | None = None            # the checkpoint the current (or last) run started from
        self.received_signal: int | None = None      # set by the preemption handlers while fit runs
        self._connections: list[tuple[events.Event, Any]] = []
        self._shared_log_dir: str | None = None  # rank 0's log_dir, when several processes run
        self._fit_sources: tuple[Any, Any, Any] | None = None

    # =============================================================================================
    # Entry points
    # =============================================================================================
    def fit(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | os.PathLike | None = None,
        weights_only: bool = True,
    ) -> None:
        """Train ``model``; resume from ``ckpt_path`` (a path, "last", "best" or "hpc") when given.

        ``weights_only=False`` unpickles arbitrary objects from the checkpoint: only for files you trust.
        """
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        flags.check_loaders_or_datamodule(train_dataloaders, val_dataloaders, datamodule, "fit")
        self._run("fit", model, datamodule, ckpt_path, weights_only, train=train_dataloaders, val=val_dataloaders)

    def validate(
        self, model: LightningModule | None = None, dataloaders: Any = None, ckpt_path: Any = None,
        verbose: bool = True, datamodule: LightningDataModule | None = None, weights_only: bool = True,
    ) -> list[dict[str, float]]:
        """One pass over the validation data; returns the epoch metrics, one dict per dataloader."""
        return self._evaluate("validate", model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def test(
        self, model: LightningModule | None = None, dataloaders: Any = None, ckpt_path: Any = None,
        verbose: bool = True, datamodule: LightningDataModule | None = None, weights_only: bool = True,
    ) -> list[dict[str, float]]:
        """One pass over the test data; returns the epoch metrics, one dict per dataloader."""
        return self._evaluate("test", model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def predict(
        self, model: LightningModule | None = None, dataloaders: Any = None,
        datamodule: LightningDataModule | None = None, return_predictions: bool = True, ckpt_path: Any = None,
        weights_only: bool = True,
    ) -> list[Any] | None:
        """``predict_step`` over the data; returns its outputs (a list per dataloader when several)."""
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        model, ckpt_path = self._model_or_previous(model, "predict", ckpt_path)
        return self._run(
            "predict", model, datamodule, ckpt_path, weights_only, predict=dataloaders, keep=return_predictions
        )

    def save_checkpoint(self, filepath: str | os.PathLike, weights_only: bool = False) -> None:
        """Write the run's state to ``filepath`` atomically (on global rank 0)."""
        if self.lightning_module is None:
            raise RuntimeError("save_checkpoint needs a model: call it during or after fit/validate/test.")
        checkpoint = build_checkpoint(self, weights_only)
        if self.is_global_zero:
            save_atomically(checkpoint, filepath, self.strategy.write_checkpoint)
        self.strategy.barrier("save_checkpoint")

    def emit(self, event: events.Event, **payload: Any) -> list[tuple[Any, Any]]:
        """Send ``event`` from this Trainer; receivers run in connection order. Cheap when nobody listens."""
        if not event.receivers:
            return []
        results = self.results
        # A receiver may emit in turn (a monitor sending log_metrics): the outer hook is current again after.
        outer, results.hook = results.hook, event.name
        try:
            return event.send(self, pl_module=self.lightning_module, **payload)
        finally:
            results.hook = outer

    # =============================================================================================
    # State for users and callbacks
    # =============================================================================================
    @property
    def current_epoch(self) -> int:
        return self.progress.epoch

    @property
    def global_step(self) -> int:
        return self.progress.global_step

    @property
    def received_sigterm(self) -> bool:
        return self.received_signal is not None

    @property
    def should_stop(self) -> bool:
        return self.progress.should_stop

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        self.progress.should_stop = bool(value)

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        return self.results.callback_metrics

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        return self.results.logged_metrics

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        return self.results.progress_bar_metrics

    @property
    def logger(self) -> Logger | None:
        return self.loggers[0] if self.loggers else None

    @property
    def log_dir(self) -> str:
        if self._shared_log_dir is not None:
            return self._shared_log_dir
        directory = self.logger.log_dir if self.logger is not None else None
        return directory if directory is not None else self.default_root_dir

    @property
    def checkpoint_callbacks(self) -> list[ModelCheckpoint]:
        return [callback for callback in self.callbacks if isinstance(callback, ModelCheckpoint)]

    @property
    def checkpoint_callback(self) -> ModelCheckpoint | None:
        found = self.checkpoint_callbacks
        return found[0] if found else None

    @property
    def training(self) -> bool:
        return self.stage == "fit" and not self.sanity_checking and self.results.stage == "train"

    @property
    def validating(self) -> bool:
        return self.results.stage == "validation" and not self.sanity_checking and self.stage is not None

    @property
    def testing(self) -> bool:
        return self.stage == "test"

    @property
    def predicting(self) -> bool:
        return self.stage == "predict"

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self.strategy.local_rank

    @property
    def node_rank(self) -> int:
        return self.strategy.node_rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def val_dataloaders_present(self) -> bool:
        return bool(self.val_dataloaders) and any(count for count in self.num_val_batches)

    @property
    def estimated_stepping_batches(self) -> float:
        """Optimizer steps the whole fit will take (for OneCycleLR and friends); inf when unbounded."""
        if self.train_dataloader is None and self._fit_sources is not None:
            self._setup_fit_loaders(self.lightning_module, *self._fit_sources)  # as Lightning: load it to count
        if self.num_training_batches == math.inf and self.max_steps == -1:
            return math.inf
        per_epoch = math.ceil(self.num_training_batches / self.accumulate_grad_batches)
        total = per_epoch * self.max_epochs if self.max_epochs != -1 else math.inf
        return min(total, self.max_steps) if self.max_steps != -1 else total

    # =============================================================================================
    # One run, set up and torn down in one place
    # =============================================================================================
    def _evaluate(self, stage: str, model: Any, dataloaders: Any, ckpt_path: Any, verbose: bool,
                  datamodule: Any, weights_only: bool) -> list[dict[str, float]]:
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        model, ckpt_path = self._model_or_previous(model, stage, ckpt_path)
        results = self._run(stage, model, datamodule, ckpt_path, weights_only, evaluate=dataloaders)
        if verbose and self.is_global_zero:
            _print_results(stage, results)
        return results

    def _model_or_previous(self, model: Any, stage: str, ckpt_path: Any) -> tuple[Any, Any]:
        """The model and checkpoint a run uses. Without a model, the previous run's; and, as in Lightning, the best
        checkpoint its ModelCheckpoint saved when no ckpt_path says otherwise."""
        if model is not None:
            return model, ckpt_path
        if self.lightning_module is None:
            raise MisconfigurationError(f"Trainer.{stage}() needs a model: pass it as the first argument.")
        if ckpt_path is None:
            callback = self.checkpoint_callback
            best = callback.best_model_path if callback is not None else ""
            warnings.warn(
                f"Trainer.{stage}() was called without a model: it uses "
                + (f"the best checkpoint of the previous run, {best}." if best else
                   "the previous run's model with its current weights (no checkpoint was saved).")
                + " Pass ckpt_path ('best', 'last' or a path) to choose, or the model to use its weights as they are.",
                stacklevel=3,
            )
            ckpt_path = "best" if best else None
        return self.lightning_module, ckpt_path

    def _run(self, stage: str, model: Any, datamodule: Any, ckpt_path: Any, weights_only: bool, **loaders: Any) -> Any:
        if not isinstance(model, LightningModule):
            raise TypeError(f"Trainer.{stage} needs a LightningModule, got {type(model).__name__}.")
        if datamodule is not None and not isinstance(datamodule, LightningDataModule):
            raise TypeError(f"datamodule must be a LightningDataModule, got {type(datamodule).__name__}.")
        if self.strategy.spawns_processes:
            return self._run_spawned(stage, model, datamodule, ckpt_path, weights_only, loaders)
        checkpoint_path = resolve_checkpoint_path(self, ckpt_path, stage)
        self.ckpt_path = str(checkpoint_path) if checkpoint_path is not None else None
        self.lightning_module, self.datamodule = model, datamodule
        model.trainer = self
        if datamodule is not None:
            datamodule.trainer = self
        self.stage, self.status = "fit" if stage == "fit" else stage, "running"
        self.results = Results(self.strategy.reduce)
        previous_settings = _apply_global_settings(self.deterministic, self.benchmark)
        try:
            self.strategy.setup_environment()
            if self.world_size > 1:  # every rank writes where rank 0's logger says
                self._shared_log_dir = self.strategy.broadcast(self.log_dir)
            self._connections = subscribers.connect(self, model)
            signals = preemption_signals(self) if stage == "fit" else contextlib.nullcontext()
            # Anomaly mode is entered only when asked for: even set to False, the context slows every backward.
            anomaly = torch.autograd.set_detect_anomaly(True) if self.detect_anomaly else contextlib.nullcontext()
            with signals, anomaly:
                result = self._run_stage(stage, model, datamodule, checkpoint_path, weights_only, **loaders)
            self.status = "finished"
            return result
        except BaseException as error:
            self.status = "interrupted"
            self.emit(events.on_exception, exception=error)
            explained = self.strategy.explain_failure(error)
            if explained is not error:
                raise explained from error
            raise
        finally:
            try:
                self._teardown(stage, model, datamodule)
            finally:
                if self.status != "finished":
                    self.strategy.close(failed=True)
                subscribers.disconnect(self._connections)
                _restore_global_settings(previous_settings)
                self.stage = self.results.hook = None

    def _run_spawned(self, stage: str, model: Any, datamodule: Any, ckpt_path: Any, weights_only: bool,
                     loaders: dict[str, Any]) -> Any:
        """ddp_spawn: run the stage in one fresh process per device; take rank 0's weights and metrics back."""
        import torch.multiprocessing as mp

        queue = mp.get_context("spawn").SimpleQueue()
        # Plain pickle bytes: torch.multiprocessing would pass tensors in shared memory, and every process
        # would then train the same parameters.
        run = pickle.dumps((self, (stage, model, datamodule, ckpt_path, weights_only, loaders)))
        mp.start_processes(_run_as_rank, args=(run, queue), nprocs=self.strategy.devices_per_node,
                           start_method="spawn")
        # Bytes, not tensors: shared-memory tensors die with the process that sent them, which has exited.
        outcome = torch.load(io.BytesIO(queue.get()), weights_only=False)  # our own child wrote them
        self.lightning_module, self.datamodule = model, datamodule
        model.trainer = self
        model.load_state_dict(outcome["state_dict"])
        self.progress = outcome["progress"]
        self.results = Results(self.strategy.reduce)
        self.results.callback_metrics.update(outcome["callback_metrics"])
        for callback, (best, last) in zip(self.checkpoint_callbacks, outcome["checkpoint_paths"]):
            callback.best_model_path, callback.last_model_path = best, last
        return outcome["result"]

    def _run_stage(self, stage: str, model: Any, datamodule: Any, checkpoint_path: Path | None, weights_only: bool,
                   **loaders: Any) -> Any:
        hook_stage = "validate" if stage == "validate" else stage
        if datamodule is not None and self._prepares_data(datamodule):
            datamodule.prepare_data()
        if self._prepares_data(model):
            model.prepare_data()
        self.strategy.barrier("prepare_data")  # nobody reads the data before it is ready
        if datamodule is not None:
            datamodule.setup(hook_stage)
        self.emit(events.setup, stage=hook_stage)
        self.profiler.setup(hook_stage, self.log_dir)
        model.configure_model()
        self.strategy.setup_module(model)

        if stage == "fit":
            self.train_dataloader, self._fit_sources = None, (datamodule, loaders["train"], loaders["val"])
            try:
                self._setup_optimizers(model)  # configure_optimizers may read estimated_stepping_batches
                if self.train_dataloader is None:
                    self._setup_fit_loaders(model, *self._fit_sources)
            finally:
                self._fit_sources = None
            checkpoint = load_checkpoint(checkpoint_path, "cpu", weights_only) if checkpoint_path is not None else {}
            if checkpoint:
                restore(self, checkpoint)
            if self.progress.sampler_seed is None and resumable_sampler(self.train_dataloader) is not None:
                # Every rank must shuffle alike: rank 0's seed wins.
                self.progress.sampler_seed = self.strategy.broadcast(new_sampler_seed(self.train_dataloader))
            if self.is_global_zero:
                if getattr(model, "_log_hyperparams", False) and model.hparams:
                    self.emit(events.log_hyperparams, params=dict(model.hparams))
                for logger in self.loggers:
                    logger.log_graph(model)
            self.emit(events.on_fit_start)
            with torch.enable_grad():  # training computes gradients even when fit is called under no_grad
                loops.run_fit(self, checkpoint.get("rng_states"))
            self.emit(events.on_fit_end)
            return None

        if checkpoint_path is not None:
            checkpoint = load_checkpoint(checkpoint_path, "cpu", weights_only)
            self.emit(events.on_load_checkpoint, checkpoint=checkpoint)
            load_weights(model, checkpoint["state_dict"])
        if stage == "predict":
            source = self._loaders_from(loaders["predict"], datamodule, model, "predict_dataloader")
            self.predict_dataloaders = as_loader_list(source)
            self.num_predict_batches = [limited_batches(d, self.limit_predict_batches, "limit_predict_batches")
                                        for d in self.predict_dataloaders]
            return loops.run_predict(self, self.predict_dataloaders, self.num_predict_batches, loaders["keep"])

        loader_stage = "validation" if stage == "validate" else "test"
        hook_name = "val_dataloader" if stage == "validate" else "test_dataloader"
        flag = "limit_val_batches" if stage == "validate" else "limit_test_batches"
        evaluation = as_loader_list(self._loaders_from(loaders["evaluate"], datamodule, model, hook_name))
        limits = [limited_batches(d, getattr(self, flag), flag) for d in evaluation]
        if stage == "validate":
            self.val_dataloaders, self.num_val_batches = evaluation, limits
        else:
            self.test_dataloaders, self.num_test_batches = evaluation, limits
        return loops.run_evaluation(self, loader_stage, evaluation, limits)

    def _prepares_data(self, owner: Any) -> bool:
        """prepare_data runs once per node (local rank 0), or once in all when prepare_data_per_node is False."""
        return self.local_rank == 0 if getattr(owner, "prepare_data_per_node", True) else self.global_rank == 0

    def _setup_optimizers(self, model: LightningModule) -> None:
        self.results.hook = "configure_optimizers"
        optimizers, schedulers = optim.parse_optimizers(model.configure_optimizers())
        if model.automatic_optimization and len(optimizers) > 1:
            raise MisconfigurationError(
                f"configure_optimizers returned {len(optimizers)} optimizers, but automatic optimization steps "
                "one. Set `self.automatic_optimization = False` in __init__ and step each optimizer in "
                "training_step (see manual optimization)."
            )
        if not model.automatic_optimization and self.accumulate_grad_batches > 1:
            raise MisconfigurationError(
                f"accumulate_grad_batches={self.accumulate_grad_batches} does not apply in manual optimization. "
                "Remove it and step the optimizers every N batches in training_step yourself."
            )
        if not model.automatic_optimization and self.gradient_clip_val:
            raise MisconfigurationError(
                "gradient_clip_val does not apply in manual optimization. Remove it and call "
                "self.clip_gradients(optimizer, gradient_clip_val=...) in training_step."
            )
        if model.truncated_bptt_steps:
            optim.check_truncated_bptt(model, self.accumulate_grad_batches)
        self.optimizers = optimizers
        self.lightning_optimizers = [optim.LightningOptimizer(optimizer, self) for optimizer in optimizers]
        self.lr_scheduler_configs = schedulers

    def _setup_fit_loaders(self, model: Any, datamodule: Any, train: Any, val: Any) -> None:
        train = self._loaders_from(train, datamodule, model, "train_dataloader")
        if train is None:
            raise MisconfigurationError(
                "fit needs training data: pass train_dataloaders, a datamodule, or define train_dataloader()."
            )
        if self.overfit_batches:
            train = without_shuffle(train)
        if self.use_distributed_sampler:  # the flag that, in Lightning too, lets the Trainer replace samplers
            train = with_resumable_sampler(train, self.world_size, self.global_rank)
        self.train_dataloader = train
        self.num_training_batches = limited_batches(train, self.limit_train_batches, "limit_train_batches")
        if self.num_training_batches == 0 and self.limit_train_batches != 0:
            raise MisconfigurationError(
                "The training dataloader is empty: it yielded no batches. Check the dataset and batch_size "
                "(drop_last=True with fewer samples than one batch gives none)."
            )
        self.val_dataloaders = as_loader_list(self._loaders_from(val, datamodule, model, "val_dataloader"))
        self.num_val_batches = [limited_batches(d, self.limit_val_batches, "limit_val_batches") for d in self.val_dataloaders]
        sanity = math.inf if self.num_sanity_val_steps == -1 else self.num_sanity_val_steps
        self.num_sanity_val_batches = [min(sanity, count) for count in self.num_val_batches]
        self.val_check_batch = flags.val_check_batch(self.val_check_interval, self.num_training_batches)

    @staticmethod
    def _loaders_from(given: Any, datamodule: Any, model: Any, hook: str) -> Any:
        if given is not None:
            return given
        for source, base in ((datamodule, LightningDataModule), (model, LightningModule)):
            if source is not None and getattr(type(source), hook, None) is not getattr(base, hook, None):
                return getattr(source, hook)()
        if datamodule is not None and hasattr(datamodule, hook):
            try:
                return getattr(datamodule, hook)()
            except NotImplementedError:
                return None
        return None

    def _teardown(self, stage: str, model: Any, datamodule: Any) -> None:
        hook_stage = "validate" if stage == "validate" else stage
        try:
            if datamodule is not None:
                datamodule.teardown(hook_stage)
            self.emit(events.teardown, stage=hook_stage)
        finally:
            self.profiler.describe()
            self.profiler.teardown(hook_stage)
            self.strategy.teardown()
            for logger in self.loggers:
                logger.finalize("success" if self.status == "finished" else "failed")


def _run_as_rank(local_rank: int, run: bytes, queue: Any) -> None:
    """A ddp_spawn process: become ``local_rank``, run the stage, and hand rank 0's outcome back."""
    trainer, (stage, model, datamodule, ckpt_path, weights_only, loaders) = pickle.loads(run)
    trainer.strategy.become_rank(local_rank)
    result = trainer._run(stage, model, datamodule, ckpt_path, weights_only, **loaders)
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


def _print_results(stage: str, results: list[dict[str, float]]) -> None:
    rows = sorted({key for metrics in results for key in metrics})
    if not rows:
        return
    title = "Validate metric" if stage == "validate" else "Test metric"
    headers = [title] + [f"DataLoader {index}" for index in range(len(results))]
    table = [[key] + [f"{metrics[key]:.6g}" if key in metrics else "" for metrics in results] for key in rows]
    widths = [max(len(str(row[column])) for row in [headers] + table) for column in range(len(headers))]
    rule = "─" * (sum(widths) + 3 * (len(widths) - 1))
    lines = [rule, "   ".join(h.ljust(w) for h, w in zip(headers, widths)), rule]
    lines += ["   ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in table]
    print("\n".join(lines + [rule]))
