"""The results store, what ``self.log`` writes to: values kept as tensors, reduced per epoch, floats for loggers.

A logged tensor stays on its device until someone asks for a number: the logger flush (every
``log_every_n_steps``), the progress bar, or an epoch end. Nothing here calls ``.item()`` per log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from engineering.errors import MisconfigurationError
from engineering.loop.flush import metrics_to_floats
from engineering.loop.state import RunningStage
from engineering.loop.metric_objects import LoggedMetricObject, MetricAttributes
from research.metrics import is_metric, is_metric_collection
from research.nested import collection_values

# Logging defaults per hook, as in Lightning: hook → (on_step, on_epoch, whether on_step is allowed).
_TRAIN_STEP_HOOKS = (
    "training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "backward", "optimizer_step", "optimizer_zero_grad",
    "configure_gradient_clipping", "lr_scheduler_step",
)
_EPOCH_HOOKS = ("on_train_start", "on_train_epoch_start", "on_train_epoch_end")
_EVAL_STEP_HOOKS = tuple(
    f"{prefix}{stage}{suffix}"
    for stage in ("validation", "test")
    for prefix, suffix in (("", "_step"), ("on_", "_batch_start"), ("on_", "_batch_end"))
)
_EVAL_EPOCH_HOOKS = tuple(
    f"on_{stage}_{when}" for stage in ("validation", "test") for when in ("start", "epoch_start", "epoch_end")
)
_LOG_DEFAULTS = {
    **dict.fromkeys(_TRAIN_STEP_HOOKS, (True, False, True)),
    **dict.fromkeys(_EPOCH_HOOKS, (False, True, False)),
    **dict.fromkeys(_EVAL_STEP_HOOKS, (False, True, True)),
    **dict.fromkeys(_EVAL_EPOCH_HOOKS, (False, True, False)),
}
_REDUCTIONS = {"mean": "mean", "avg": "mean", "sum": "sum", "max": "max", "min": "min"}
_REDUCTION_FUNCTIONS = {torch.mean: "mean", torch.sum: "sum", torch.max: "max", torch.min: "min"}
# Step values are kept in a list and folded into a running total this often, so an epoch of a
# million steps holds at most this many tensors, and no step pays for an addition.
_FOLD_EVERY = 1024


_METRIC_STATE = ("reduce", "on_step", "on_epoch", "prog_bar", "logger", "sync_dist", "total", "weight")


@dataclass
class _Metric:
    reduce: str
    on_step: bool
    on_epoch: bool
    prog_bar: bool
    logger: bool
    sync_dist: bool
    name: str = ""
    suffix: str = ""  # "/dataloader_idx_N" with several evaluation dataloaders; training logs none
    pending: list[tuple[torch.Tensor, int]] = field(default_factory=list)
    total: torch.Tensor | None = None
    weight: int = 0

    @property
    def epoch_key(self) -> str:
        return f"{self.name}_epoch{self.suffix}" if self.on_step else self.name + self.suffix

    def update(self, value: torch.Tensor, batch_size: int) -> None:
        self.pending.append((value, batch_size))
        if len(self.pending) >= _FOLD_EVERY:
            self._fold()

    def compute(self) -> torch.Tensor:
        self._fold()
        if self.reduce == "mean":
            return self.total / self.weight
        return self.total

    def _fold(self) -> None:
        """Add the pending values to the running total one at a time, in the order they were logged, in float32
        (or float64): Lightning's operations, so epoch values are bit for bit Lightning's."""
        total = self.total
        for value, size in self.pending:
            if value.dtype not in (torch.float32, torch.float64):
                value = value.to(torch.float64 if torch.get_default_dtype() is torch.float64 else torch.float32)
            if self.reduce == "mean":
                value = value * size
            if total is None:
                total = value
            elif self.reduce in ("mean", "sum"):
                total = total + value
            elif self.reduce == "max":
                total = torch.maximum(total, value)
            else:
                total = torch.minimum(total, value)
            self.weight += size
        self.total = total
        self.pending.clear()


class Results:
    """The Trainer's store of logged values; ``LightningModule.log`` writes here."""

    def __init__(self, reduce_across_ranks: Any = None) -> None:
        self.hook: str | None = None
        self.stage: RunningStage = RunningStage.TRAINING  # whose epoch aggregates self.log adds to
        self.dataloader_idx: int | None = None
        self.batch: Any = None
        self._reduce_across_ranks = reduce_across_ranks
        self._batch_size_of: tuple[int, int] | None = None  # (id(batch), size), computed once a batch
        self._epoch_metrics: dict[str, dict[str, _Metric]] = {}
        self.callback_metrics: dict[str, torch.Tensor] = {}
        self.logged_metrics: dict[str, torch.Tensor] = {}
        self._progress_bar: dict[str, Any] = {}
        self._unlogged: dict[str, dict[str, torch.Tensor]] = {"step": {}, "epoch": {}}
        self._metric_attributes = MetricAttributes()
        self._evaluation_steps: dict[int, int] = {}
        self._checked_levels: dict[tuple[str | None, bool | None, bool | None], tuple[bool, bool, bool]] = {}
        # Per stage and (hook, key): the arguments a value was first logged with in the current epoch.
        self._log_arguments: dict[RunningStage, dict[tuple[str | None, str], tuple[Any, ...]]] = {}
        # A tensor logged again with the same arguments, in the same stage, hook and epoch, goes straight where
        # its first call put it: (stage, hook, dataloader_idx, name) → (arguments, step targets, epoch aggregate).
        self._repeats: dict[tuple[Any, ...], tuple[tuple[Any, ...], tuple[tuple[dict[str, Any], str], ...],
                                                   _Metric | None]] = {}

    # -- called by LightningModule.log -------------------------------------------------------
    def log(self, name: str, value: Any, prog_bar: bool = False, logger: bool | None = None, on_step: bool | None = None,
            on_epoch: bool | None = None, reduce_fx: Any = "mean", enable_graph: bool = False, sync_dist: bool = False,
            add_dataloader_idx: bool = True, batch_size: int | None = None, rank_zero_only: bool = False,
            metric_attribute: str | None = None, module: Any = None) -> None:
        """Store ``value`` (a number, a one-element tensor or a torchmetrics ``Metric``) for the current hook."""
        hook = self.hook
        given = (prog_bar, logger, on_step, on_epoch, reduce_fx, enable_graph, sync_dist, add_dataloader_idx,
                 rank_zero_only, metric_attribute)
        repeat = self._repeats.get((self.stage, hook, self.dataloader_idx, name))
        if repeat is not None and repeat[0] == given and type(value) is torch.Tensor and value.dim() == 0:
            tensor = value.detach()
            for target, key in repeat[1]:
                target[key] = tensor
            if repeat[2] is not None:
                repeat[2].update(tensor, self._batch_size(batch_size))
            return
        levels = self._checked_levels.get((hook, on_step, on_epoch))
        if levels is None:  # the first log with these arguments in this hook: check them once
            levels = self._checked_levels[hook, on_step, on_epoch] = _levels(name, hook, on_step, on_epoch)
        on_step, on_epoch, step_allowed = levels
        metric_object = not isinstance(value, (torch.Tensor, int, float)) and is_metric(value)
        if metric_object and metric_attribute is None and module is not None:
            self._metric_attributes.require(module, value, name)
        if type(value) is torch.Tensor and value.dim() == 0 and not enable_graph:  # the usual case, checked inline
            tensor = value.detach()
        else:
            tensor = None if metric_object else _as_scalar(name, value, enable_graph)
        # As in Lightning, the suffix follows the fork: "loss_epoch/dataloader_idx_1".
        suffix = f"/dataloader_idx_{self.dataloader_idx}" if self.dataloader_idx is not None and add_dataloader_idx else ""
        logger = True if logger is None else logger
        arguments = (prog_bar, logger, on_step, on_epoch, reduce_fx, enable_graph, sync_dist, add_dataloader_idx,
                     rank_zero_only, metric_attribute)
        self._check_same_arguments(hook, name, suffix, arguments)

        metrics = self._epoch_metrics.setdefault(self.stage, {})
        entry: Any = None
        if metric_object:
            entry = metrics[name + suffix] = LoggedMetricObject(value, on_step, on_epoch, prog_bar, logger, name, suffix)
            tensor = entry.step_value() if on_step else None
        elif sync_dist and on_step:
            tensor = self._reduce(tensor, reduce_fx)
        targets = self._step_value_targets(name, suffix, on_epoch, prog_bar, logger) if on_step else ()
        if tensor is not None:
            for target, key in targets:
                target[key] = tensor
        if on_epoch:
            if not metric_object:
                entry = metrics.get(name + suffix)
                if entry is None:
                    entry = metrics[name + suffix] = _Metric(
                        _reduction(name, reduce_fx), on_step, on_epoch, prog_bar, logger, sync_dist, name, suffix
                    )
                entry.update(tensor, self._batch_size(batch_size))
            if not step_allowed:  # logged from an epoch-level hook: visible to the next hook at once
                self._publish_epoch_value(entry)
        if type(value) is torch.Tensor and step_allowed and not (metric_object or enable_graph or sync_dist and on_step):
            self._repeats[self.stage, hook, self.dataloader_idx, name] = (given, targets, entry)

    def _check_same_arguments(self, hook: str | None, name: str, suffix: str, arguments: tuple[Any, ...]) -> None:
        first = self._log_arguments.setdefault(self.stage, {}).setdefault((hook, name + suffix), arguments)
        if first != arguments:
            raise MisconfigurationError(
                f"You called `self.log({name}, ...)` twice in `{hook}` with different arguments. This is not "
                "allowed: log it with the same arguments every time, or use another name for the other value."
            )

    def _step_value_targets(self, name: str, suffix: str, on_epoch: bool, prog_bar: bool,
                            logger: bool) -> tuple[tuple[dict[str, Any], str], ...]:
        """Where a step value goes, as (dictionary, key). As in Lightning, a validation or test step value goes to
        the loggers and the bar, never to callback_metrics; a training one logged per epoch too is also
        callback_metrics[name] until the epoch's value replaces it."""
        step_key = f"{name}_step{suffix}" if on_epoch else name + suffix
        targets = []
        if self.stage is RunningStage.TRAINING:
            targets.append((self.callback_metrics, step_key))
            if on_epoch:
                targets.append((self.callback_metrics, name + suffix))
        if prog_bar:
            targets.append((self._progress_bar, step_key))
        if logger:
            targets.append((self._unlogged["step"], step_key))
        return tuple(targets)

    # -- called by the loops ------------------------------------------------------------------
    def start_epoch(self, stage: RunningStage) -> None:
        """Forget the epoch aggregates of ``stage``; keep what callbacks already saw."""
        self._epoch_metrics[stage] = {}
        self._log_arguments[stage] = {}
        self._repeats.clear()

    def end_epoch(self, stage: RunningStage) -> None:
        """Reduce ``stage``'s epoch values and make them visible in callback_metrics."""
        for metric in self._epoch_metrics.get(stage, {}).values():
            if metric.on_epoch:
                self._publish_epoch_value(metric)

    def reset_metric_objects(self, stage: RunningStage) -> None:
        """``reset()`` every torchmetrics ``Metric`` that ``stage`` logged, once its epoch is over (Lightning)."""
        for metric in self._epoch_metrics.get(stage, {}).values():
            if isinstance(metric, LoggedMetricObject):
                metric.reset()

    def state_dict(self) -> dict[str, Any]:
        """The training epoch's running aggregates, so a run resumed mid-epoch reduces over the whole epoch."""
        state = {}
        for name, metric in self._epoch_metrics.get(RunningStage.TRAINING, {}).items():
            if isinstance(metric, LoggedMetricObject):
                continue  # its state is the metric's, kept with the module's as torchmetrics decides
            metric.compute()  # folds what is pending into total and weight
            state[name] = {field: getattr(metric, field) for field in _METRIC_STATE}
        return {RunningStage.TRAINING.value: state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._repeats.clear()  # they point at the aggregates replaced here
        self._epoch_metrics[RunningStage.TRAINING] = {
            name: _Metric(**{"name": name, **values}) for name, values in state.get(RunningStage.TRAINING.value, {}).items()
        }

    def epoch_keys(self, stage: RunningStage) -> list[str]:
        """The callback_metrics keys holding ``stage``'s epoch values."""
        metrics = self._epoch_metrics.get(stage, {})
        return [metric.epoch_key for metric in metrics.values() if metric.on_epoch]

    def next_evaluation_step(self, dataloader_idx: int) -> int:
        """The step an evaluation batch's on_step values are logged at: as in Lightning, the batches of that
        dataloader counted over the whole run (validation inside fit goes on counting from pass to pass)."""
        step = self._evaluation_steps.get(dataloader_idx, 0)
        self._evaluation_steps[dataloader_idx] = step + 1
        return step

    def take_unlogged(self, kind: str) -> dict[str, torch.Tensor]:
        """The ``kind`` ("step" or "epoch") values logged since the last flush; the caller sends them on."""
        pending = self._unlogged[kind]
        unlogged = pending.copy()
        pending.clear()  # the same dict, which repeated logs write to
        return unlogged

    @property
    def has_unlogged_steps(self) -> bool:
        """Whether step values wait for the loggers' next flush."""
        return bool(self._unlogged["step"])

    def reset(self) -> None:
        """Drop everything, as after the sanity check."""
        self._epoch_metrics.clear()
        self.callback_metrics.clear()
        self.logged_metrics.clear()
        self._progress_bar.clear()
        for pending in self._unlogged.values():
            pending.clear()
        self._repeats.clear()

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        return metrics_to_floats(self._progress_bar)  # the bar reads every value at once: one host sync

    # -- internals ----------------------------------------------------------------------------
    def _publish_epoch_value(self, metric: _Metric | LoggedMetricObject) -> None:
        value = metric.compute()
        if metric.sync_dist:
            value = self._reduce(value, metric.reduce)
        epoch_key = metric.epoch_key
        self.callback_metrics[epoch_key] = value
        self.callback_metrics[metric.name + metric.suffix] = value
        if metric.prog_bar:
            self._progress_bar[epoch_key] = value
        if metric.logger:
            self._unlogged["epoch"][epoch_key] = value

    def _reduce(self, tensor: torch.Tensor, reduce_fx: Any) -> torch.Tensor:
        if self._reduce_across_ranks is None:
            return tensor
        return self._reduce_across_ranks(tensor, _reduction("sync_dist", reduce_fx))

    def _batch_size(self, explicit: int | None) -> int:
        if explicit is not None:
            return int(explicit)
        batch = self.batch
        cached = self._batch_size_of
        if cached is not None and cached[0] == id(batch):
            return cached[1]
        size = _infer_batch_size(batch)
        self._batch_size_of = (id(batch), size)
        return size


def _levels(name: str, hook: str | None, on_step: bool | None, on_epoch: bool | None) -> tuple[bool, bool, bool]:
    """``on_step`` and ``on_epoch`` with the hook's defaults filled in, and whether the hook may log per step."""
    defaults = _LOG_DEFAULTS.get(hook)  # type: ignore[arg-type]
    if defaults is None:
        raise MisconfigurationError(
            (f"You can't `self.log()` inside `{hook}`. " if hook else "")
            + f"self.log({name!r}) was called in {hook or 'no hook'}, where logging is not supported. "
            "Log from training_step, validation_step, test_step, their batch hooks or their epoch hooks."
        )
    default_on_step, default_on_epoch, step_allowed = defaults
    on_step = default_on_step if on_step is None else on_step
    on_epoch = default_on_epoch if on_epoch is None else on_epoch
    if on_step and not step_allowed:
        raise MisconfigurationError(
            f"You can't `self.log(on_step=True)` inside `{hook}`, must be one of (False,). self.log({name!r}) there "
            "logs once per epoch: use on_step=False (the default there)."
        )
    if not on_step and not on_epoch:
        raise MisconfigurationError(f"self.log({name!r}) with on_step=False and on_epoch=False logs nothing.")
    return on_step, on_epoch, step_allowed


def _as_scalar(name: str, value: Any, enable_graph: bool) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise MisconfigurationError(
                f"self.log({name!r}) needs a scalar, got a tensor of shape {tuple(value.shape)}. "
                "Reduce it first, e.g. value.mean()."
            )
        if value.dim():
            value = value.reshape(())
        return value if enable_graph else value.detach()
    if isinstance(value, (int, float, bool)):
        return torch.tensor(float(value))
    if is_metric_collection(value):
        raise MisconfigurationError(
            f"self.log({name!r}) got a torchmetrics MetricCollection; log it with self.log_dict(collection)."
        )
    raise MisconfigurationError(
        f"self.log({name!r}) needs a number or a one-element tensor, got {type(value).__name__}. "
        "Use self.log_dict for several values."
    )


def _reduction(name: str, reduce_fx: Any) -> str:
    reduction = _REDUCTIONS.get(reduce_fx) if isinstance(reduce_fx, str) else _REDUCTION_FUNCTIONS.get(reduce_fx)
    if reduction is None:
        raise MisconfigurationError(
            f"self.log({name!r}, reduce_fx={reduce_fx!r}) is not supported; use 'mean', 'sum', 'max' or 'min'."
        )
    return reduction


def _infer_batch_size(batch: Any) -> int:
    """The first dimension of the first tensor in ``batch`` (1 for a scalar, or when there is no tensor)."""
    first = next(collection_values(batch, torch.Tensor), None)
    if first is None:
        return 1
    return first.shape[0] if first.dim() else 1
