"""Walking nested batches: lists, tuples, namedtuples, dicts and dataclasses of tensors and other values.

The one walker of the project: device transfer, precision casting, truncated-BPTT splitting, batch-size
inference and ``all_gather`` all use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any

import torch


def apply_to_collection(data: Any, kinds: type | tuple[type, ...], function: Callable[[Any], Any]) -> Any:
    """``data`` with ``function`` applied to every value of ``kinds`` in it, through nested lists, tuples,
    namedtuples, dicts and dataclasses (rebuilt with the same types); other values are kept as they are.

    The one walker of nested batches: device transfer, precision casting, truncated-BPTT splitting, batch-size
    inference and ``all_gather`` all go through it (``collection_values`` reads in the same order)."""
    if isinstance(data, kinds):
        return function(data)
    if isinstance(data, Mapping):
        return type(data)({key: apply_to_collection(value, kinds, function) for key, value in data.items()})
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # a namedtuple
        return type(data)(*(apply_to_collection(value, kinds, function) for value in data))
    if isinstance(data, (list, tuple)):
        return type(data)(apply_to_collection(value, kinds, function) for value in data)
    if is_dataclass(data) and not isinstance(data, type):
        changes = {f.name: apply_to_collection(getattr(data, f.name), kinds, function) for f in fields(data) if f.init}
        return replace(data, **changes)
    return data


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in nested lists, tuples, dicts and dataclasses to ``device``."""
    return apply_to_collection(batch, torch.Tensor, lambda tensor: tensor.to(device, non_blocking=True))


def collection_values(data: Any, kinds: type | tuple[type, ...]) -> Iterator[Any]:
    """Every value of ``kinds`` in ``data``, walked as ``apply_to_collection`` walks it, without rebuilding."""
    if isinstance(data, kinds):
        yield data
    elif isinstance(data, Mapping):
        for value in data.values():
            yield from collection_values(value, kinds)
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from collection_values(value, kinds)
    elif is_dataclass(data) and not isinstance(data, type):
        for field in fields(data):
            if field.init:
                yield from collection_values(getattr(data, field.name), kinds)
