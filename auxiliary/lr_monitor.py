"""LearningRateMonitor: each optimizer's learning rate (and momentum, weight decay) sent to the loggers."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import torch

from auxiliary.logger_metrics import logging_due, require_logger, send_to_loggers
from engineering import Callback, MisconfigurationError


class LearningRateMonitor(Callback):
    """Log ``lr-<Optimizer>`` per parameter group, at ``logging_interval`` "step", "epoch", or (None) each
    scheduler's own interval.

    Names follow Lightning: ``lr-Adam``, ``lr-Adam-1`` for a second Adam, ``lr-Adam/pg2`` for a second
    parameter group (or the group's ``name``), the scheduler's ``name`` when it has one; ``-momentum``
    and ``-weight_decay`` are appended for ``log_momentum`` and ``log_weight_decay``. Step values go out
    every ``log_every_n_steps``, as the module's own; the values logged are kept in ``lrs``, and the last
    momentum and weight decay of each group in ``last_momentum_values`` and ``last_weight_decay_values``
    (``None`` until logged).

    Args:
        logging_interval: ``"step"``, ``"epoch"``, or ``None``: each optimizer at its scheduler's interval,
            and one without a scheduler at both.
        log_momentum: Also log each group's momentum (Adam's ``beta1``); 0 for optimizers without one.
        log_weight_decay: Also log each group's weight decay.

    Raises:
        MisconfigurationError: ``logging_interval`` is not one of the three; or, when training starts,
            the Trainer has no logger.
    """

    def __init__(self, logging_interval: str | None = None, log_momentum: bool = False,
                 log_weight_decay: bool = False) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise MisconfigurationError(
                f"LearningRateMonitor(logging_interval={logging_interval!r}) is not supported; "
                "use 'step', 'epoch' or None (each scheduler's own interval)."
            )
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}
        self.last_momentum_values: dict[str, float | None] = {}
        self.last_weight_decay_values: dict[str, float | None] = {}

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        require_logger(trainer, "LearningRateMonitor")
        named = _named_optimizers(trainer)
        if self.log_momentum and not all(_has_momentum(optimizer) for optimizer, _, _ in named):
            warnings.warn("LearningRateMonitor(log_momentum=True): some optimizers have no momentum; "
                          "0 is logged for them.", RuntimeWarning, stacklevel=2)
        self.lrs = {name: [] for _, names, _ in named for name in names}
        self.last_momentum_values = {f"{name}-momentum": None for name in self.lrs}
        self.last_weight_decay_values = {f"{name}-weight_decay": None for name in self.lrs}

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.logging_interval != "epoch" and logging_due(trainer):
            send_to_loggers(trainer, self._stats(trainer, "step" if self.logging_interval is None else None))

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.logging_interval != "step":
            send_to_loggers(trainer, self._stats(trainer, "epoch" if self.logging_interval is None else None))

    def _stats(self, trainer: Any, interval: str | None) -> dict[str, float]:
        """The values of optimizers whose scheduler steps at ``interval`` (any, when None; always those
        without a scheduler); also put in ``trainer.callback_metrics`` so other callbacks can monitor them."""
        stats: dict[str, float] = {}
        for optimizer, names, scheduler_interval in _named_optimizers(trainer):
            if interval is not None and scheduler_interval not in (None, interval):
                continue
            for group, name in zip(optimizer.param_groups, names):
                stats[name] = float(group["lr"])
                self.lrs.setdefault(name, []).append(stats[name])
                if self.log_momentum:
                    stats[f"{name}-momentum"] = float(_momentum(optimizer, group))
                    self.last_momentum_values[f"{name}-momentum"] = stats[f"{name}-momentum"]
                if self.log_weight_decay:
                    stats[f"{name}-weight_decay"] = float(group.get("weight_decay", 0.0))
                    self.last_weight_decay_values[f"{name}-weight_decay"] = stats[f"{name}-weight_decay"]
        device = trainer.strategy.root_device
        trainer.callback_metrics.update({name: torch.tensor(value, device=device) for name, value in stats.items()})
        return stats


def _named_optimizers(trainer: Any) -> list[tuple[torch.optim.Optimizer, list[str], str | None]]:
    """(optimizer, a name per parameter group, its scheduler's interval or None), scheduled ones first."""
    entries: list[tuple[Any, str, str | None]] = []
    for config in trainer.lr_scheduler_configs:
        optimizer = config.scheduler.optimizer
        entries.append((optimizer, config.name, config.interval))
    scheduled = [optimizer for optimizer, _, _ in entries]
    entries += [(optimizer, None, None) for optimizer in trainer.optimizers
                if not any(optimizer is seen for seen in scheduled)]
    seen_types: Counter[type] = Counter()
    named = []
    for optimizer, given_name, interval in entries:
        base = given_name
        if base is None:
            seen_types[type(optimizer)] += 1
            count = seen_types[type(optimizer)]
            base = f"lr-{type(optimizer).__name__}" + (f"-{count - 1}" if count > 1 else "")
        named.append((optimizer, _group_names(base, optimizer.param_groups), interval))
    return named


def _group_names(base: str, groups: list[dict[str, Any]]) -> list[str]:
    labels = [group.get("name", f"pg{index + 1}") for index, group in enumerate(groups)]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise MisconfigurationError(
            f"{base} has parameter groups sharing the name(s) {duplicated}; give each group its own 'name'."
        )
    if len(groups) > 1:
        return [f"{base}/{label}" for label in labels]
    return [f"{base}/{groups[0]['name']}" if "name" in groups[0] else base]


def _has_momentum(optimizer: torch.optim.Optimizer) -> bool:
    return "momentum" in optimizer.defaults or "betas" in optimizer.defaults


def _momentum(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> float:
    return group["betas"][0] if "betas" in optimizer.defaults else group.get("momentum", 0.0)
