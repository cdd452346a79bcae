"""Loaders: how many batches to run, iterating them knowing the last one, and resumable training order."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler

from engineering.errors import MisconfigurationError


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
    """Yield ``(batch_idx, batch, is_last)`` for the first ``limit`` batches of ``loader``."""
    if limit <= 0:
        return
    yield from flagged(iter(loader), limit, 0, sized=math.isfinite(sized_length(loader)))


def flagged(iterator: Iterator[Any], limit: float, batch_idx: int, sized: bool) -> Iterator[tuple[int, Any, bool]]:
    """``(batch_idx, batch, is_last)`` from ``iterator``, numbered from ``batch_idx`` up to ``limit``; ``sized``:
    ``limit`` is known to be reached, so the last batch is known without reading one ahead."""
    if batch_idx >= limit:
        return iter(())
    if sized:  # numbered and flagged by C iterators: no Python frame per batch
        flags = itertools.chain(itertools.repeat(False, int(limit) - batch_idx - 1), (True,))
        return zip(range(batch_idx, int(limit)), iterator, flags)  # range first: nothing is read past the limit
    return _flagged_reading_ahead(iterator, limit, batch_idx)


def _flagged_reading_ahead(iterator: Iterator[Any], limit: float, batch_idx: int) -> Iterator[tuple[int, Any, bool]]:
    # Without a length, fetch one batch ahead so that is_last is known in time (as Lightning does).
    try:
        upcoming = next(iterator)
    except StopIteration:
        return
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


# ---------------------------------------------------------------------------------------------
# Resumable training data: the order of every epoch is fixed by (seed, epoch)
# ---------------------------------------------------------------------------------------------
class ResumableSampler(Sampler[int]):
    """Dataset indices in an order fixed by ``(seed, epoch)``: the same in every run, and after a resume.

    The Trainer puts one in place of a DataLoader's RandomSampler (``shuffle=True``) or SequentialSampler,
    sets ``seed`` and ``epoch`` before each epoch, and calls ``skip_next(n)`` to start a resumed epoch after
    the ``n`` indices it already trained on, without loading them. With ``num_replicas > 1`` each rank
    takes every ``num_replicas``-th index of the same order (padded so that all ranks get as many), as
    DistributedSampler does.
    """

    def __init__(self, length: int, shuffle: bool, num_replicas: int = 1, rank: int = 0) -> None:
        self.length = length
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = 0
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_next(self, count: int) -> None:
        """The next pass starts after ``count`` of this rank's indices (once; later passes start at the beginning)."""
        self._skip = count

    def __len__(self) -> int:
        return math.ceil(self.length / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        start, self._skip = self._skip, 0
        if not self.shuffle and self.num_replicas == 1:
            return iter(range(start, self.length))
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        if self.num_replicas > 1:
            order += order[: len(self) * self.num_replicas - self.length]
            order = order[self.rank :: self.num_replicas]
        return iter(order[start:])


def with_resumable_sampler(loader: Any, num_replicas: int = 1, rank: int = 0) -> Any:
    """``loader`` rebuilt around a ResumableSampler when it is a plain DataLoader reading a whole map-style
    dataset in order or shuffled; anything else (custom samplers, subclasses, iterables) is returned as it is.
    """
    if type(loader) is not DataLoader or loader.batch_size is None or type(loader.batch_sampler) is not BatchSampler:
        return loader
    original = loader.sampler
    if type(original) is RandomSampler:
        if original.replacement or original.num_samples != len(loader.dataset):
            return loader
        shuffle = True
    elif type(original) is SequentialSampler:
        shuffle = False
    else:
        return loader
    return _rebuilt(loader, sampler=ResumableSampler(len(loader.dataset), shuffle, num_replicas, rank), shuffle=None)


def resumable_sampler(loader: Any) -> ResumableSampler | None:
    sampler = getattr(loader, "sampler", None)
    return sampler if isinstance(sampler, ResumableSampler) else None


def distributed_sampler_seed() -> int:
    """The seed of the shared order under several processes: Lightning's rule (the seed ``seed_everything`` set,
    else 0), so every rank agrees without drawing a random number."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def stateful_part(loader: Any) -> Any:
    """The object that keeps its own place in the data (has ``state_dict`` and ``load_state_dict``): the loader
    itself (e.g. torchdata's StatefulDataLoader), its batch sampler or its sampler. None when there is none."""
    for candidate in (loader, getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        if callable(getattr(candidate, "state_dict", None)) and callable(getattr(candidate, "load_state_dict", None)):
            return candidate
    return None


_END = object()


def epoch_batches(
    loader: Iterable[Any], limit: float, epoch: int, seed: int | None, start: int,
    to_device: Callable[[Iterable[Any]], Iterable[Any]] = lambda loader: loader,
    order_drawn: Callable[[], None] = lambda: None,
) -> Iterator[tuple[int, Any, bool]]:
    """The training batches of ``epoch`` from batch ``start`` on, as ``(batch_idx, batch, is_last)``.

    Samplers with ``set_epoch`` are told the epoch. ``to_device`` wraps the loader as the strategy wants it
    read (XLA's background device loader). ``order_drawn`` is called once the epoch's order has been drawn and
    before the first batch is loaded: where a resumed run puts its checkpoint's random state back.

    A resumed epoch (``start > 0``) continues without re-reading what it skips: a ResumableSampler skips the
    indices; a stateful loader or sampler already knows its place; a plain DataLoader gets a batch sampler that
    draws the same order as the original run did (from the random state the caller restored) and leaves out the
    first ``start`` batches of indices before any is loaded. Any other iterable is read and its first ``start``
    batches dropped.
    """
    tell_epoch(loader, epoch, seed)
    if limit <= 0 or start >= limit:
        order_drawn()
        return iter(())
    resumable = resumable_sampler(loader)
    to_drop = 0
    if start and resumable is not None:
        resumable.skip_next(start * loader.batch_size)
    elif start and stateful_part(loader) is None and _batches_by_index(loader):
        # The order is drawn lazily, with the first batch: the random state goes back between the two.
        skipping = _SkipFirst(loader.batch_sampler, start, order_drawn)
        return flagged(iter(to_device(_rebuilt_with_batch_sampler(loader, skipping))), limit, start,
                        sized=math.isfinite(sized_length(loader)))
    elif start and stateful_part(loader) is None:
        to_drop = start
    iterator = iter(to_device(loader))
    for _ in range(to_drop):
        if next(iterator, _END) is _END:
            break
    order_drawn()
    return flagged(iterator, limit, start, sized=math.isfinite(sized_length(loader)))


def tell_epoch(loader: Any, epoch: int, seed: int | None) -> None:
    """Samplers with ``set_epoch`` learn the epoch; a ResumableSampler also the run's seed."""
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(epoch)
    resumable = resumable_sampler(loader)
    if resumable is not None and seed is not None:
        resumable.seed = seed


def _batches_by_index(loader: Any) -> bool:
    return type(loader) is DataLoader and loader.batch_size is not None and loader.batch_sampler is not None


def rebuilt_skipping(loader: Any, count: int, around_draw: tuple[Callable[[], None], Callable[[], None]]) -> Any:
    """``loader`` rebuilt to leave out its first ``count`` batches without loading them, calling
    ``around_draw[0]`` before its order is drawn and ``around_draw[1]`` once it is; None where the loader has
    no batch sampler to skip with (or keeps its own place)."""
    if stateful_part(loader) is not None or not _batches_by_index(loader):
        return None
    before, after = around_draw
    return _rebuilt_with_batch_sampler(loader, _SkipFirst(loader.batch_sampler, count, after, before))


class _SkipFirst(Sampler[list[int]]):
    """A batch sampler that iterates ``batch_sampler`` (drawing the same random numbers) but leaves out its
    first ``count`` batches of indices, so they are never loaded. ``before_draw`` is called before it starts
    iterating, ``order_drawn`` before the first batch it hands out (or at its end, when none is left)."""

    def __init__(self, batch_sampler: Any, count: int, order_drawn: Callable[[], None],
                 before_draw: Callable[[], None] = lambda: None) -> None:
        self.batch_sampler = batch_sampler
        self.count = count
        self.order_drawn = order_drawn
        self.before_draw = before_draw

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.count)

    def __iter__(self) -> Iterator[list[int]]:
        drawn = False
        self.before_draw()
        for index, batch in enumerate(self.batch_sampler):
            if index < self.count:
                continue
            if not drawn:
                self.order_drawn()
                drawn = True
            yield batch
        if not drawn:
            self.order_drawn()


def without_shuffle(loader: Any) -> Any:
    """The same DataLoader reading in order, for overfit_batches; other iterables are returned as they are."""
    if not isinstance(loader, DataLoader) or isinstance(loader.sampler, SequentialSampler):
        return loader
    if loader.batch_sampler is not None and loader.batch_size is None:
        return loader  # a custom batch sampler decides the order; leave it to the user
    return _rebuilt(loader, shuffle=False)


def _rebuilt_with_batch_sampler(loader: DataLoader, batch_sampler: Any) -> DataLoader:
    """A DataLoader like ``loader`` (same dataset, workers, collation, generator) reading ``batch_sampler``."""
    arguments = _loader_arguments(loader)
    for batching in ("batch_size", "drop_last"):
        del arguments[batching]
    return DataLoader(loader.dataset, batch_sampler=batch_sampler, **arguments)


def _rebuilt(loader: DataLoader, **changes: Any) -> DataLoader:
    """A DataLoader like ``loader`` (same dataset, batching, workers) with ``changes`` applied."""
    return DataLoader(loader.dataset, **{**_loader_arguments(loader), **changes})


def _loader_arguments(loader: DataLoader) -> dict[str, Any]:
    return dict(
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=loader.pin_memory_device,
        in_order=loader.in_order,
    )
