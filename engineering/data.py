"""Loaders: how many batches to run, and iterating them with a look-ahead that knows the last one."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, SequentialSampler

from engineering.logging import MisconfigurationError


def as_loader_list(loaders: Any) -> list[Iterable[Any]]:
    """One loader or a list of loaders (a list of lists, DataLoaders or other iterables) → a list."""
    if loaders is None:
        return []
    if isinstance(loaders, (list, tuple)) and loaders and all(_is_loader(item) for item in loaders):
        return list(loaders)
    return [loaders]


def _is_loader(candidate: Any) -> bool:
    if isinstance(candidate, DataLoader):
        return True
    return isinstance(candidate, Iterable) and not isinstance(candidate, (torch.Tensor, tuple, dict, str, bytes))


def sized_length(loader: Iterable[Any]) -> float:
    """``len(loader)``, or infinity for an iterable without a length."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return math.inf


def limited_batches(loader: Iterable[Any], limit: int | float, flag: str) -> float:
    """How many batches of ``loader`` a run uses under a ``limit_*_batches`` value (int or fraction)."""
    length = sized_length(loader)
    if isinstance(limit, int):
        return min(length, limit)
    if limit == 1.0:
        return length
    if math.isinf(length):
        raise MisconfigurationError(
            f"{flag}={limit} is a fraction, but the loader has no length. Pass an int number of batches."
        )
    batches = int(length * limit)
    if batches == 0 and limit > 0:
        raise MisconfigurationError(
            f"{flag}={limit} of {int(length)} batches is 0 batches. Raise {flag} or pass an int."
        )
    return batches


def with_last_flag(loader: Iterable[Any], limit: float) -> Iterator[tuple[int, Any, bool]]:
    """Yield ``(batch_idx, batch, is_last)``, fetching one batch ahead so ``is_last`` is known in time."""
    if limit <= 0:
        return
    iterator = iter(loader)
    try:
        upcoming = next(iterator)
    except StopIteration:
        return
    batch_idx = 0
    while True:
        batch = upcoming
        if batch_idx + 1 >= limit:
            yield batch_idx, batch, True
            return
        try:
            upcoming = next(iterator)
        except StopIteration:
            yield batch_idx, batch, True
            return
        yield batch_idx, batch, False
        batch_idx += 1


def without_shuffle(loader: Any) -> Any:
    """The same DataLoader reading in order, for overfit_batches; other iterables are returned as they are."""
    if not isinstance(loader, DataLoader) or isinstance(loader.sampler, SequentialSampler):
        return loader
    if loader.batch_sampler is not None and loader.batch_size is None:
        return loader  # a custom batch sampler decides the order; leave it to the user
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        shuffle=False,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
        persistent_workers=loader.persistent_workers,
    )
