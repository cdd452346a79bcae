"""Optimizers and schedulers: parsing ``configure_optimizers``, the optimizer wrapper, stepping schedulers."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engineering import events
from engineering.bus.callback import overrides
from engineering.errors import MisconfigurationError
from research import LightningModule

_SCHEDULER_KEYS = {"scheduler", "name", "interval", "frequency", "monitor", "strict", "reduce_on_plateau"}


@dataclass
class LRSchedulerConfig:
    """A scheduler and when to step it; Lightning's ``lr_scheduler`` dict, as a dataclass."""

    scheduler: Any
    name: str | None = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: str | None = None
    strict: bool = True


class LightningOptimizer:
    """Wraps an optimizer so that ``step`` runs the hooks, the precision's step and counts global_step.

    As in Lightning, the wrapper is an instance of the wrapped optimizer's class (``isinstance(opt, SGD)``).
    Built without a ``trainer``, ``step`` is the optimizer's own.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, trainer: Any = None) -> None:
        self._optimizer = optimizer
        self._trainer = weakref.ref(trainer) if trainer is not None else lambda: None
        self.zero_grad = optimizer.zero_grad  # the optimizer's own, with no wrapper call: it runs every step
        self.__class__ = _wrapper_class(type(optimizer))

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self._optimizer.param_groups

    @property
    def state(self) -> Any:
        return self._optimizer.state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._optimizer, name)

    def __repr__(self) -> str:
        return f"LightningOptimizer({self._optimizer!r})"

    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        """Run ``closure`` (forward + backward), on_before_optimizer_step, clipping, then the step; count it in
        ``global_step``. Manual optimization calls this; so does an overridden ``optimizer_step``."""
        trainer = self._trainer()
        if trainer is None:
            return self._optimizer.step(closure, **kwargs) if closure is not None else self._optimizer.step(**kwargs)
        module = trainer.lightning_module
        automatic = module.automatic_optimization
        # The default hook clips only when gradient_clip_val is set: without either, skip the call.
        clips = automatic and (trainer.gradient_clip_val or overrides(type(module), LightningModule,
                                                                      "configure_gradient_clipping"))

        def closure_then_clip() -> Any:
            if closure is None:
                loss = None
            elif automatic:  # forward and backward need gradients even where step() runs under @torch.no_grad()
                with torch.enable_grad():
                    loss = closure()
            else:
                loss = closure()
            if loss is not None or not automatic:  # a backward ran: hooks see true gradients
                trainer.strategy.precision.unscale_gradients(self._optimizer)
            trainer.hooks(events.on_before_optimizer_step, optimizer=self._optimizer)
            if clips:
                module.configure_gradient_clipping(
                    self._optimizer, trainer.gradient_clip_val, trainer.gradient_clip_algorithm
                )
            return loss

        result = trainer.strategy.optimizer_step(self._optimizer, closure_then_clip, **kwargs)
        trainer.progress.global_step += 1
        return result


@functools.cache
def _wrapper_class(optimizer_type: type) -> type:
    """``Lightning<Optimizer>``: a LightningOptimizer that is also an ``optimizer_type``, whose public methods act on
    the wrapped optimizer (Lightning's wrapper would run them on itself: ``load_state_dict`` would not reach it)."""

    def delegate(name: str) -> Callable[..., Any]:
        def call(self: LightningOptimizer, *args: Any, **kwargs: Any) -> Any:
            return getattr(self.optimizer, name)(*args, **kwargs)

        return call

    methods = {name: delegate(name) for name in dir(optimizer_type)
               if not name.startswith("_") and callable(getattr(optimizer_type, name)) and not hasattr(LightningOptimizer, name)}
    return type(f"Lightning{optimizer_type.__name__}", (LightningOptimizer, optimizer_type), methods)


def parse_optimizers(returned: Any) -> tuple[list[torch.optim.Optimizer], list[LRSchedulerConfig]]:
    """Every form ``configure_optimizers`` may return → (optimizers, scheduler configs)."""
    if returned is None:
        raise MisconfigurationError(
            "configure_optimizers returned None. Return an optimizer, e.g. "
            "`return torch.optim.SGD(self.parameters(), lr=0.1)`; to only evaluate, use trainer.validate/test."
        )
    if _is_optimizer(returned):
        return [returned], []
    if isinstance(returned, Mapping):
        return _attached(*_parse_dicts([returned]))
    if isinstance(returned, Sequence) and not isinstance(returned, str):
        items = list(returned)
        if items and all(isinstance(item, Mapping) for item in items):
            return _attached(*_parse_dicts(items))
        if len(items) == 2 and isinstance(items[0], Sequence) and not _is_optimizer(items[0]):
            optimizers = list(items[0])
            schedulers = items[1] if isinstance(items[1], Sequence) else [items[1]]
            _check_optimizers(optimizers)
            return _attached(optimizers, [_scheduler_config(entry) for entry in schedulers])
        if items and all(_is_optimizer(item) for item in items):
            return items, []
    raise MisconfigurationError(
        f"configure_optimizers returned {type(returned).__name__}, which is not a supported form. Return an "
        "optimizer, a list of optimizers, ([optimizers], [schedulers]), or "
        "{'optimizer': ..., 'lr_scheduler': ...} (or a list of such dicts)."
    )


def _attached(optimizers: list[Any], configs: list[LRSchedulerConfig]) -> tuple[list[Any], list[LRSchedulerConfig]]:
    """A scheduler of an optimizer that was not returned would change an lr nothing trains with: refused, as
    Lightning does, in its words."""
    for config in configs:
        scheduled = getattr(config.scheduler, "optimizer", None)
        if scheduled is not None and all(scheduled is not optimizer for optimizer in optimizers):
            raise MisconfigurationError(
                "Some schedulers are attached with an optimizer that wasn't returned from `configure_optimizers`. "
                f"{type(config.scheduler).__name__} steps a {type(scheduled).__name__} that is not among the "
                "returned optimizers: build it on one of them (e.g. `StepLR(optimizer, ...)` with the optimizer you "
                "return)."
            )
    return optimizers, configs


def _parse_dicts(entries: list[Mapping[str, Any]]) -> tuple[list[Any], list[LRSchedulerConfig]]:
    optimizers, configs = [], []
    for entry in entries:
        unknown = set(entry) - {"optimizer", "lr_scheduler", "monitor"}
        if "optimizer" not in entry or unknown:
            raise MisconfigurationError(
                f"configure_optimizers returned a dict with keys {sorted(entry)}; it needs 'optimizer' and may "
                "have 'lr_scheduler' and 'monitor'."
            )
        optimizers.append(entry["optimizer"])
        if entry.get("lr_scheduler") is not None:
            configs.append(_scheduler_config(entry["lr_scheduler"], entry.get("monitor")))
    _check_optimizers(optimizers)
    return optimizers, configs


def _scheduler_config(entry: Any, monitor: str | None = None) -> LRSchedulerConfig:
    if isinstance(entry, Mapping):
        unknown = set(entry) - _SCHEDULER_KEYS
        if "scheduler" not in entry or unknown:
            raise MisconfigurationError(
                f"An lr_scheduler dict has keys {sorted(entry)}; it needs 'scheduler' and may have "
                f"{sorted(_SCHEDULER_KEYS - {'scheduler'})}."
            )
        config = LRSchedulerConfig(**{"monitor": monitor, **entry})
    else:
        config = LRSchedulerConfig(scheduler=entry, monitor=monitor)
    if not callable(getattr(config.scheduler, "step", None)):
        raise MisconfigurationError(f"{type(config.scheduler).__name__} is not a learning-rate scheduler (no step()).")
    if config.interval not in ("step", "epoch"):
        raise MisconfigurationError(f"lr_scheduler interval={config.interval!r}; use 'step' or 'epoch'.")
    if not isinstance(config.frequency, int) or config.frequency < 1:
        raise MisconfigurationError(f"lr_scheduler frequency={config.frequency!r}; use a positive int.")
    config.reduce_on_plateau = isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if config.reduce_on_plateau and config.monitor is None:
        raise MisconfigurationError(
            "ReduceLROnPlateau needs a metric to follow. Return "
            "{'optimizer': optimizer, 'lr_scheduler': {'scheduler': scheduler, 'monitor': 'val_loss'}}."
        )
    return config


def _is_optimizer(candidate: Any) -> bool:
    return isinstance(candidate, torch.optim.Optimizer)


def _check_optimizers(optimizers: list[Any]) -> None:
    for optimizer in optimizers:
        if not _is_optimizer(optimizer):
            raise MisconfigurationError(
                f"configure_optimizers gave {type(optimizer).__name__} where a torch.optim.Optimizer belongs."
            )


def loss_from(outputs: Any) -> torch.Tensor | None:
    """The loss in what training_step returned: a tensor, a dict with 'loss', or None (skip)."""
    if outputs is None:
        return None
    loss = outputs
    if not isinstance(loss, torch.Tensor) and isinstance(outputs, Mapping):
        if "loss" not in outputs:
            raise MisconfigurationError(
                f"training_step returned a dict without 'loss' (keys: {sorted(outputs)}). Put the loss under 'loss'."
            )
        loss = outputs["loss"]
    if not isinstance(loss, torch.Tensor):
        raise MisconfigurationError(
            f"training_step returned {type(loss).__name__}; return the loss tensor, a dict with 'loss', or None."
        )
    if loss.numel() != 1:
        raise MisconfigurationError(
            f"training_step returned a loss of shape {tuple(loss.shape)}; return a scalar, e.g. loss.mean()."
        )
    return loss


def check_truncated_bptt(module: Any, accumulate_grad_batches: int) -> None:
    """Fail at fit start, not mid-epoch, when truncated_bptt_steps cannot work as configured."""
    steps = module.truncated_bptt_steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise MisconfigurationError(f"truncated_bptt_steps={steps!r}; set it to a positive int (0 turns it off).")
    if not module.automatic_optimization:
        raise MisconfigurationError(
            "truncated_bptt_steps needs automatic optimization. In manual optimization, split the batch in "
            "training_step yourself and step the optimizer once per split."
        )
    if accumulate_grad_batches > 1:
        raise MisconfigurationError(
            f"truncated_bptt_steps steps the optimizer once per time split, so accumulate_grad_batches="
            f"{accumulate_grad_batches} cannot apply. Remove one of the two."
        )
    if len(inspect.signature(module.training_step).parameters) < 3:
        raise MisconfigurationError(
            "With truncated_bptt_steps set, training_step receives the hidden state of the previous split: "
            "define `def training_step(self, batch, batch_idx, hiddens)`."
        )


def batch_end_outputs(step_outputs: Any, automatic: bool, accumulate: int) -> Any:
    """What on_train_batch_end receives, as in Lightning. Automatic optimization: ``{"loss": detached loss /
    accumulate_grad_batches, **the other keys}``; manual: the step's return, detached, as a dict. Under truncated
    backpropagation through time, a list with one such dict per split."""
    if isinstance(step_outputs, torch.Tensor) and automatic:  # the usual case, checked by the closure already
        return {"loss": (step_outputs / accumulate if accumulate > 1 else step_outputs).detach()}
    if isinstance(step_outputs, list):
        return [batch_end_outputs(outputs, automatic, accumulate) for outputs in step_outputs]
    if not automatic:
        return manual_outputs(step_outputs)
    loss = loss_from(step_outputs)
    if loss is None:
        return {}
    extras = {k: v for k, v in step_outputs.items() if k != "loss"} if isinstance(step_outputs, Mapping) else {}
    return {"loss": (loss / accumulate if accumulate > 1 else loss).detach(), **extras}


def manual_outputs(outputs: Any) -> dict[str, Any]:
    """What on_train_batch_end receives in manual optimization: the step's return, detached, as a dict."""
    if outputs is None:
        return {}
    if isinstance(outputs, torch.Tensor):
        return {"loss": outputs.detach()}
    if isinstance(outputs, Mapping):
        return {key: value.detach() if isinstance(value, torch.Tensor) else value for key, value in outputs.items()}
    raise MisconfigurationError(
        f"training_step returned {type(outputs).__name__}; in manual optimization return None, a tensor or a dict."
    )


def step_schedulers(trainer: Any, interval: str, index: int, plateau: bool) -> None:
    """Step the ``interval`` schedulers (ReduceLROnPlateau ones or the others) whose frequency divides ``index + 1``.

    Plateau schedulers step after validation, the others right after the optimizer step, as in Lightning.
    """
    module = trainer.lightning_module
    for config in trainer.lr_scheduler_configs:
        if config.interval != interval or config.reduce_on_plateau != plateau or (index + 1) % config.frequency:
            continue
        metric = None
        if config.reduce_on_plateau:
            metric = trainer.callback_metrics.get(config.monitor)
            if metric is None:
                if config.strict:
                    raise MisconfigurationError(
                        f"ReduceLROnPlateau follows {config.monitor!r}, which was not logged. Logged metrics: "
                        f"{sorted(trainer.callback_metrics)}. Log it with self.log or set 'strict': False."
                    )
                continue
        module.lr_scheduler_step(config.scheduler, metric)


# torch.optim's own optimizers, whose step() evaluates a closure exactly once; LBFGS re-evaluates it. Exact
# classes only: a subclass may override step() and use the closure its own way.
_CALLING_CLOSURE_ONCE = frozenset(
    optimizer for optimizer in vars(torch.optim).values()
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)
    and optimizer not in (torch.optim.Optimizer, torch.optim.LBFGS)
)


def calls_closure_once(optimizer: Any) -> bool:
    """Whether ``optimizer.step(closure)`` calls the closure exactly once, first: then running the closure's
    work just before ``step()`` is the same computation, without a closure."""
    return type(optimizer) in _CALLING_CLOSURE_ONCE


def set_up_optimizers(trainer: Any, model: Any) -> None:
    """Call ``configure_optimizers`` and check that what it returned can train ``model`` under the Trainer's flags."""
    trainer.results.hook = "configure_optimizers"
    optimizers, schedulers = parse_optimizers(model.configure_optimizers())
    if model.automatic_optimization and len(optimizers) > 1:
        raise MisconfigurationError(
            f"configure_optimizers returned {len(optimizers)} optimizers, but automatic optimization steps "
            "one. Set `self.automatic_optimization = False` in __init__ and step each optimizer in "
            "training_step (see manual optimization)."
        )
    if not model.automatic_optimization and trainer.accumulate_grad_batches > 1:
        raise MisconfigurationError(
            f"accumulate_grad_batches={trainer.accumulate_grad_batches} does not apply in manual optimization. "
            "Remove it and step the optimizers every N batches in training_step yourself."
        )
    if not model.automatic_optimization and trainer.gradient_clip_val:
        raise MisconfigurationError(
            "gradient_clip_val does not apply in manual optimization. Remove it and call "
            "self.clip_gradients(optimizer, gradient_clip_val=...) in training_step."
        )
    if model.truncated_bptt_steps:
        check_truncated_bptt(model, trainer.accumulate_grad_batches)
    trainer.optimizers = optimizers
    trainer.lightning_optimizers = [LightningOptimizer(optimizer, trainer) for optimizer in optimizers]
    trainer.lr_scheduler_configs = schedulers
