"""torchmetrics objects, recognised without importing torchmetrics.

A program that logs a ``Metric`` has imported torchmetrics already, so looking in ``sys.modules`` finds its
classes; a program that never uses torchmetrics never pays for importing it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def _torchmetrics_class(name: str) -> type | None:
    torchmetrics = sys.modules.get("torchmetrics")
    return getattr(torchmetrics, name, None) if torchmetrics is not None else None


def is_metric(value: Any) -> bool:
    """Whether ``value`` is a ``torchmetrics.Metric``."""
    metric_class = _torchmetrics_class("Metric")
    return metric_class is not None and isinstance(value, metric_class)


def is_metric_collection(value: Any) -> bool:
    """Whether ``value`` is a ``torchmetrics.MetricCollection``."""
    collection_class = _torchmetrics_class("MetricCollection")
    return collection_class is not None and isinstance(value, collection_class)


def metric_collection_items(collection: Any) -> Iterable[tuple[str, Any]]:
    """The collection's metrics under their prefixed names; metrics sharing a compute group keep sharing their
    state instead of each getting a copy."""
    options = {"keep_base": False}
    if getattr(collection, "_enable_compute_groups", False):
        options["copy_state"] = False
    return collection.items(**options)
