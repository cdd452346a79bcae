"""The Trainer: its flags, the fit/validate/test/predict entry points, and the state users and callbacks read.

The flags are validated once into a ``TrainerConfig`` (``config.py``); each entry point is a call of
``loop/run.py``'s ``run``, which owns the run's state (progress, loaders, results) that the properties below read.
"""

from __future__ import annotations

import datetime
import math
import os
import signal
from collections.abc import Iterable
from typing import Any

import torch

from engineering import events
from engineering.accelerators import Accelerator, resolve_devices, select_accelerator
from engineering.bus import subscribers
from engineering.bus.callback import Callback
from engineering.checkpointing.checkpoint import build_checkpoint, save_atomically
from engineering.checkpointing.model_checkpoint import ModelCheckpoint
from engineering.config import RUN_FLAGS, TrainerConfig, check_loaders_or_datamodule, resolve, resolve_profiler
from engineering.data.loaders import set_up_fit_loaders
from engineering.loggers import Logger
from engineering.loop import run
from engineering.loop.results import Results
from engineering.loop.state import (
    LoaderAttribute, Loaders, Progress, RunningStage, TrainerFn, TrainerState, TrainerStatus,
)
from engineering.optimization.precision import normalize_precision
from engineering.profiler import Profiler
from engineering.progress_bar import ProgressBar
from engineering.strategies import Strategy, create_strategy
from research import LightningDataModule, LightningModule


class Trainer:
    """Runs a LightningModule: ``fit``, ``validate``, ``test``, ``predict``. Flags mean what Lightning's mean.

    The descriptions below are also the ``tribus fit --help`` text and the flag table of docs/engineering.md.

    Args:
        accelerator: `"cpu"`, `"gpu"`/`"cuda"`, `"mps"`, `"tpu"`/`"xla"`, `"auto"` (CUDA if available, then MPS,
            else the CPU), or an `Accelerator` object. Asking for one that is not there fails at once, listing what is.
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
            batches. With `check_val_every_n_epoch=None`, an int counts batches across epochs. Or a duration
            (`"DD:HH:MM:SS"`, a `datetime.timedelta`, a dict like `{"minutes": 30}`): validate after the first batch
            that ends once that much time passed since training started or the last validation ended, across
            epochs, in the epochs `check_val_every_n_epoch` allows; an epoch's end alone does not validate then.
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
        inference_mode: validate, test and predict under `torch.inference_mode()`; `False` uses `torch.no_grad()`,
            as fit's validation always does (as in Lightning).
        use_distributed_sampler: with several processes, replace a plain training `DataLoader`'s sampler by a
            `ResumableSampler` (shuffled or not, as the loader was; sharded across processes, ordered as Lightning's
            `DistributedSampler`). One process keeps its sampler. `False` leaves samplers alone.
        sync_batchnorm: with DDP or FSDP, turn BatchNorm layers into SyncBatchNorm.
        reload_dataloaders_every_n_epochs: ask the `*_dataloader()` hooks for the training loaders again every n
            epochs (before the epoch starts), and for the validation loaders at the first validation n epochs after
            they were last asked; `0` never. A run counts from the epoch it started or resumed in.
        profiler: `"simple"`, `"advanced"`, `"pytorch"`, `True` (simple), any name registered under the entry-point
            group `tribus.profilers`, or a `Profiler` object.
        detect_anomaly: `torch.autograd.set_detect_anomaly` for the duration of each run (slow; for debugging NaNs).
        on_nonfinite: a NaN or infinite training loss: `None` does nothing (as Lightning); `"raise"` raises
            `FloatingPointError` naming the step; `"skip"` skips that optimizer step (warning once); `"stop"` saves
            `nonfinite_step_<n>.ckpt` in `default_root_dir` and stops. Automatic optimization only.
        barebones: the bare loop: no discovered subscribers, logger, checkpointing, progress bar, summary or sanity
            check, and `self.log` does nothing. Turning one of those on as well is an error.
        default_root_dir: where the default logger, the default checkpoints and preemption checkpoints
            (`hpc_ckpt_<n>.ckpt`) go.
    """

    def __init__(
        self, *, accelerator: str | Accelerator = "auto", strategy: str | Strategy = "auto",
        devices: int | str | list[int] = "auto", num_nodes: int = 1, precision: int | str | None = None,
        logger: Logger | Iterable[Logger] | bool | None = None, callbacks: Callback | list[Callback] | None = None,
        fast_dev_run: bool | int = False, max_epochs: int | None = None, min_epochs: int | None = None,
        max_steps: int = -1, min_steps: int | None = None,
        max_time: str | datetime.timedelta | dict[str, int] | None = None,
        limit_train_batches: int | float | None = None, limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None, limit_predict_batches: int | float | None = None,
        overfit_batches: int | float = 0.0,
        val_check_interval: int | float | str | datetime.timedelta | dict[str, int] | None = None,
        check_val_every_n_epoch: int | None = 1, num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None, enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None, enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1, gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None, deterministic: bool | str | None = None,
        benchmark: bool | None = None, inference_mode: bool = True, use_distributed_sampler: bool = True,
        sync_batchnorm: bool = False, profiler: Profiler | str | bool | None = None, detect_anomaly: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        on_nonfinite: str | None = None, barebones: bool = False, default_root_dir: str | os.PathLike | None = None,
    ) -> None:
        self._use_config(TrainerConfig(**{name: value for name, value in locals().items() if name != "self"}))
        self.precision = normalize_precision("32-true" if precision is None else precision)
        self.accelerator, device_type = select_accelerator(accelerator)
        self.device_ids = resolve_devices(device_type, devices)  # the indices this node's processes use
        self.strategy = create_strategy(strategy, device_type, self.device_ids, num_nodes, self.precision,
                                        sync_batchnorm=sync_batchnorm)
        self.strategy.trainer = self
        self.profiler = resolve_profiler(profiler)
        if detect_anomaly and self.is_global_zero:  # Lightning says the same
            print("You have turned on `Trainer(detect_anomaly=True)`. This will significantly slow down compute speed "
                  "and is recommended only for model debugging.")
        self.callbacks, self.loggers = subscribers.assemble(self, callbacks, resolve(self.config)["logger"])
        # The run's state: set up by the loops (loop/run.py), read through the properties below.
        self.state, self.progress, self.loaders = TrainerState(), Progress(), Loaders()
        self.results = Results(self.strategy.reduce)
        self.hooks: Any = None  # the run's HookRunner (bus/runner.py), while a run is in progress
        self.lightning_module: LightningModule | None = None
        self.datamodule: LightningDataModule | None = None
        self.optimizers, self.lightning_optimizers, self.lr_scheduler_configs = [], [], []  # set by fit
        self.ckpt_path: str | None = None            # the checkpoint the current (or last) run started from
        self.received_signal: int | None = None      # set by the preemption handlers while fit runs
        self.shared_log_dir: str | None = None       # rank 0's log_dir, when several processes run
        self.pending_fit_sources: tuple[Any, Any, Any] | None = None  # while configure_optimizers runs

    def __setattr__(self, name: str, value: Any) -> None:
        # A flag set on the Trainer (a callback scheduling accumulate_grad_batches) is validated like one given.
        if name in RUN_FLAGS and "config" in vars(self):
            self._use_config(TrainerConfig(**{**vars(self.config), name: value}))
        elif name == "loggers":
            object.__setattr__(self, name, value if value else [])  # as Lightning: None (or no logger) clears them
        else:
            object.__setattr__(self, name, value)

    def _use_config(self, config: TrainerConfig) -> None:
        """Keep ``config``, and each flag's value as runs use it as a plain attribute (read every step)."""
        resolved = resolve(config)
        object.__setattr__(self, "config", config)
        for flag in RUN_FLAGS:
            object.__setattr__(self, flag, resolved[flag])

    # =============================================================================================
    # Entry points
    # =============================================================================================
    def fit(
        self, model: LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
        datamodule: LightningDataModule | None = None, ckpt_path: str | os.PathLike | None = None,
        weights_only: bool = True,
    ) -> None:
        """Train ``model``; resume from ``ckpt_path`` (a path, "last", "best" or "hpc") when given.

        ``weights_only=False`` unpickles arbitrary objects from the checkpoint: only for files you trust.
        """
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        check_loaders_or_datamodule(train_dataloaders, val_dataloaders, datamodule, "fit")
        run.run(self, TrainerFn.FITTING, model, datamodule, ckpt_path, weights_only,
                train=train_dataloaders, val=val_dataloaders)

    def validate(
        self, model: LightningModule | None = None, dataloaders: Any = None, ckpt_path: Any = None,
        verbose: bool = True, datamodule: LightningDataModule | None = None, weights_only: bool = True,
    ) -> list[dict[str, float]]:
        """One pass over the validation data; returns the epoch metrics, one dict per dataloader."""
        return self._evaluate(TrainerFn.VALIDATING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def test(
        self, model: LightningModule | None = None, dataloaders: Any = None, ckpt_path: Any = None,
        verbose: bool = True, datamodule: LightningDataModule | None = None, weights_only: bool = True,
    ) -> list[dict[str, float]]:
        """One pass over the test data; returns the epoch metrics, one dict per dataloader."""
        return self._evaluate(TrainerFn.TESTING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def predict(
        self, model: LightningModule | None = None, dataloaders: Any = None,
        datamodule: LightningDataModule | None = None, return_predictions: bool = True, ckpt_path: Any = None,
        weights_only: bool = True,
    ) -> list[Any] | None:
        """``predict_step`` over the data; returns its outputs (a list per dataloader when several)."""
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        model, ckpt_path = run.model_or_previous(self, model, TrainerFn.PREDICTING, ckpt_path)
        return run.run(self, TrainerFn.PREDICTING, model, datamodule, ckpt_path, weights_only,
                       predict=dataloaders, keep=return_predictions)

    def save_checkpoint(self, filepath: str | os.PathLike, weights_only: bool = False) -> None:
        """Write the run's state to ``filepath`` atomically (on global rank 0)."""
        if self.lightning_module is None:
            raise RuntimeError("save_checkpoint needs a model: call it during or after fit/validate/test.")
        checkpoint = build_checkpoint(self, weights_only)
        if self.is_global_zero:
            save_atomically(checkpoint, filepath, self.strategy.write_checkpoint)
        self.strategy.barrier("save_checkpoint")

    def emit(self, event: events.Event, **payload: Any) -> list[tuple[Any, Any]]:
        """Notify the subscribers of ``event`` from this Trainer, in connection order. Cheap when nobody listens.
        (The module's own hooks are called by the run's hook runner, ``trainer.hooks``.)"""
        if not event.receivers:
            return []
        results = self.results
        # A receiver may emit in turn (a monitor sending log_metrics): the outer hook is current again after.
        outer, results.hook = results.hook, event.name
        try:
            return event.send(self, pl_module=self.lightning_module, **payload)
        finally:
            results.hook = outer

    def _evaluate(self, fn: TrainerFn, model: Any, dataloaders: Any, ckpt_path: Any, verbose: bool,
                  datamodule: Any, weights_only: bool) -> list[dict[str, float]]:
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        model, ckpt_path = run.model_or_previous(self, model, fn, ckpt_path)
        results = run.run(self, fn, model, datamodule, ckpt_path, weights_only, evaluate=dataloaders)
        if verbose and self.is_global_zero:
            run.print_results(fn, results)
        return results

    # =============================================================================================
    # State for users and callbacks (Lightning's names)
    # =============================================================================================
    @property
    def current_epoch(self) -> int:
        return self.progress.epoch

    @property
    def global_step(self) -> int:
        return self.progress.global_step

    @property
    def received_sigterm(self) -> bool:
        return self.received_signal not in (None, signal.SIGINT)

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
    def model(self) -> torch.nn.Module | None:
        """The module as the strategy runs it: the DDP-wrapped one under DDP, else the LightningModule."""
        return getattr(self.strategy, "model", None) or self.lightning_module

    @property
    def logger(self) -> Logger | None:
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Logger | None) -> None:
        self.loggers = [logger] if logger else []

    @property
    def log_dir(self) -> str:
        if self.shared_log_dir is not None:
            return self.shared_log_dir
        directory = self.logger.log_dir if self.logger is not None else None
        return directory if directory is not None else self.default_root_dir

    @property
    def num_devices(self) -> int:
        return len(self.device_ids)

    @property
    def progress_bar_callback(self) -> ProgressBar | None:
        return next((callback for callback in self.callbacks if isinstance(callback, ProgressBar)), None)

    @property
    def checkpoint_callbacks(self) -> list[ModelCheckpoint]:
        return [callback for callback in self.callbacks if isinstance(callback, ModelCheckpoint)]

    @property
    def checkpoint_callback(self) -> ModelCheckpoint | None:
        found = self.checkpoint_callbacks
        return found[0] if found else None

    @property
    def training(self) -> bool:
        return self.state.stage is RunningStage.TRAINING

    @property
    def sanity_checking(self) -> bool:
        return self.state.stage is RunningStage.SANITY_CHECKING

    @property
    def validating(self) -> bool:
        return self.state.stage is RunningStage.VALIDATING

    @property
    def testing(self) -> bool:
        return self.state.fn is TrainerFn.TESTING and self.state.status is TrainerStatus.RUNNING

    @property
    def predicting(self) -> bool:
        return self.state.fn is TrainerFn.PREDICTING and self.state.status is TrainerStatus.RUNNING

    @property
    def interrupted(self) -> bool:
        return self.state.status is TrainerStatus.INTERRUPTED

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
        return bool(self.loaders.val) and any(count for count in self.num_val_batches)

    @property
    def estimated_stepping_batches(self) -> float:
        """Optimizer steps the whole fit will take (for OneCycleLR and friends); inf when unbounded."""
        if self.train_dataloader is None and self.pending_fit_sources is not None:
            # As Lightning: configure_optimizers asked, so load the training data now to count its batches.
            set_up_fit_loaders(self, self.lightning_module, *self.pending_fit_sources)
        if self.num_training_batches == math.inf and self.max_steps == -1:
            return math.inf
        per_epoch = math.ceil(self.num_training_batches / self.accumulate_grad_batches)
        total = per_epoch * self.max_epochs if self.max_epochs != -1 else math.inf
        return min(total, self.max_steps) if self.max_steps != -1 else total


# The run's data, as data/loaders.py sets it up.
for _name, _field in (("train_dataloader", "train"), ("val_dataloaders", "val_as_given"),
                      ("test_dataloaders", "test_as_given"), ("predict_dataloaders", "predict_as_given"),
                      ("num_training_batches", "num_training_batches"), ("num_val_batches", "num_val_batches"),
                      ("num_sanity_val_batches", "num_sanity_val_batches"), ("num_test_batches", "num_test_batches"),
                      ("num_predict_batches", "num_predict_batches"), ("val_check_batch", "val_check_batch")):
    setattr(Trainer, _name, LoaderAttribute(_field))
