"""torchmetrics ``Metric`` objects in ``self.log``, as Lightning treats them.

Per step the value is the one the user's ``metric(preds, target)`` call returned (the metric's forward
cache); per epoch it is ``metric.compute()``; once the epoch is over the metric is ``reset()``. Syncing across
processes is the metric's own business (``compute`` syncs its state), so ``sync_dist`` does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from engineering.errors import MisconfigurationError
from research.metrics import is_metric


@dataclass
class LoggedMetricObject:
    """A ``Metric`` logged under one name: what the results store keeps for it during an epoch."""

    metric: Any
    on_step: bool
    on_epoch: bool
    prog_bar: bool
    logger: bool
    name: str
    suffix: str = ""  # "/dataloader_idx_N" with several evaluation dataloaders
    sync_dist: bool = False  # the metric syncs its own state in compute()

    @property
    def epoch_key(self) -> str:
        return f"{self.name}_epoch{self.suffix}" if self.on_step else self.name + self.suffix

    def step_value(self) -> torch.Tensor | None:
        """The metric's last forward value; None when the user called only ``update()`` this step."""
        value = getattr(self.metric, "_forward_cache", None)
        return None if value is None else _scalar(self.name, value, "forward")

    def compute(self) -> torch.Tensor:
        return _scalar(self.name, self.metric.compute(), "compute()")

    def reset(self) -> None:
        self.metric.reset()


def _scalar(name: str, value: Any, produced_by: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(
            f"The {produced_by} value of the metric logged as {name!r} must be a tensor, got {type(value).__name__}. "
            "Log its parts one by one, e.g. with self.log_dict."
        )
    if value.numel() != 1:
        raise MisconfigurationError(
            f"The {produced_by} value of the metric logged as {name!r} has shape {tuple(value.shape)}; "
            "self.log needs one number. Reduce it (e.g. average='macro') or log its parts with self.log_dict."
        )
    return value.detach().reshape(())


class MetricAttributes:
    """Finds the module attribute holding a logged ``Metric``, as Lightning requires: searched once per module."""

    def __init__(self) -> None:
        self._found: dict[int, dict[int, str]] = {}

    def require(self, module: Any, metric: Any, name: str) -> None:
        """Refuse, naming the fix, a metric logged under ``name`` that is none of ``module``'s attributes."""
        attributes = self._found.get(id(module))
        if attributes is None:
            attributes = {id(sub): attribute for attribute, sub in module.named_modules() if is_metric(sub)}
            self._found[id(module)] = attributes
        if not attributes:
            raise MisconfigurationError(
                "Could not find the `LightningModule` attribute for the `torchmetrics.Metric` logged. "
                "You can fix this by setting an attribute for the metric in your `LightningModule`."
            )
        if id(metric) not in attributes:
            raise MisconfigurationError(
                "Could not find the `LightningModule` attribute for the `torchmetrics.Metric` logged. "
                f"You can fix this by calling `self.log({name}, ..., metric_attribute=name)` where `name` is one "
                f"of {list(attributes.values())}"
            )
