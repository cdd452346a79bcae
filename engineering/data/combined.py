"""CombinedLoader: several iterables read together, batch by batch, under one of Lightning's four modes.

A collection of loaders (dicts, lists, tuples, nested) is flattened into a list of loaders; each step reads
from the loaders the mode says and puts the batches back into the collection's shape:

    max_size_cycle   until the longest loader ends; the shorter ones start over when they end
    max_size         until the longest loader ends; an ended loader gives None
    min_size         until the shortest loader ends
    sequential       each loader to its end, one after the other; each batch comes alone, with its loader's index

Iteration yields ``(batch, batch_idx, dataloader_idx)``. Every iterator is opened and read through ``Streams``,
so that the training loop can record (and, on resume, put back) where each loader's pass began.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engineering.data.batches import sized_length

MODES = ("min_size", "max_size_cycle", "max_size", "sequential")


class Streams:
    """One iterator per loader. ``exhausted[i]``: loader i has ended at least once since ``start``; ``reads[i]``:
    batches read from its current pass. An ended pass leaves ``iterators[i]`` None."""

    def __init__(self, loaders: list[Iterable[Any]]) -> None:
        self.loaders = loaders
        self.iterators: list[Iterator[Any] | None] = [None] * len(loaders)
        self.exhausted = [False] * len(loaders)
        self.reads = [0] * len(loaders)

    def open(self, index: int) -> None:
        self.iterators[index] = iter(self.loaders[index])
        self.reads[index] = 0

    def stop_workers(self) -> None:
        """Stop the worker processes of the DataLoader iterators still open, now rather than when the garbage
        collector frees them (which waits seconds for each); what a checkpoint records of the passes stays."""
        for loader, iterator in zip(self.loaders, self.iterators):
            shut_down = getattr(iterator, "_shutdown_workers", None)  # a DataLoader's multi-process iterator
            if shut_down is not None:
                shut_down()
                if getattr(loader, "_iterator", None) is iterator:  # persistent workers: the next iter() starts anew
                    loader._iterator = None

    def read(self, index: int) -> Any:
        iterator = self.iterators[index]
        if iterator is None:
            raise StopIteration
        try:
            batch = next(iterator)
        except StopIteration:
            self.exhausted[index] = True
            self.iterators[index] = None
            raise
        self.reads[index] += 1
        return batch


class _Mode:
    """How one pass over the combined loaders reads them: ``start`` opens, ``step`` returns the next
    ``(batches, batch_idx, dataloader_idx)``; ``batches`` is the flat list (one batch for sequential)."""

    def __init__(self, streams: Streams, limits: list[float] | None) -> None:
        self.streams = streams
        self.limits = limits
        self.batch_idx = 0

    def start(self) -> None:
        for index in range(len(self.streams.loaders)):
            self.streams.open(index)

    def resume_at(self, batch_idx: int) -> None:
        """Continue a pass whose streams were reopened where a checkpoint left them."""
        self.batch_idx = batch_idx

    def step(self) -> tuple[Any, int, int]:
        batches = self.read()
        self.batch_idx += 1
        return batches, self.batch_idx - 1, 0

    def read(self) -> Any:
        raise NotImplementedError

    def read_each(self, after_end: Callable[[int], Any]) -> list[Any]:
        """A batch from every loader; ``after_end(index)`` stands in for one whose iterator has ended."""
        batches = []
        for index in range(len(self.streams.loaders)):
            try:
                batches.append(self.streams.read(index))
            except StopIteration:
                batches.append(after_end(index))
        return batches


class _MaxSizeCycle(_Mode):
    def read(self) -> list[Any]:
        return self.read_each(self._restart)

    def _restart(self, index: int) -> Any:
        if all(self.streams.exhausted):
            raise StopIteration  # every loader has ended once: the longest one sets the length
        self.streams.open(index)
        return self.streams.read(index)


class _MaxSize(_Mode):
    def read(self) -> list[Any]:
        batches = self.read_each(lambda index: None)
        if all(iterator is None for iterator in self.streams.iterators):
            raise StopIteration
        return batches


class _MinSize(_Mode):
    def read(self) -> list[Any]:
        return [self.streams.read(index) for index in range(len(self.streams.loaders))]


class _Sequential(_Mode):
    """One loader at a time (only its iterator is open), each up to its limit."""

    def __init__(self, streams: Streams, limits: list[float] | None) -> None:
        super().__init__(streams, limits)
        self.dataloader_idx = 0

    def start(self) -> None:
        self.dataloader_idx = self.batch_idx = 0
        if self.streams.loaders:
            self.streams.open(0)

    def resume_at(self, batch_idx: int) -> None:
        streams = self.streams
        open_now = [index for index, iterator in enumerate(streams.iterators) if iterator is not None]
        self.dataloader_idx = open_now[0] if open_now else len(streams.loaders)
        self.batch_idx = streams.reads[self.dataloader_idx] if open_now else 0

    def step(self) -> tuple[Any, int, int]:
        streams, count = self.streams, len(self.streams.loaders)
        while self.dataloader_idx < count:
            limit = math.inf if self.limits is None else self.limits[self.dataloader_idx]
            if self.batch_idx < limit:
                try:
                    batch = streams.read(self.dataloader_idx)
                except StopIteration:
                    pass
                else:
                    self.batch_idx += 1
                    return batch, self.batch_idx - 1, self.dataloader_idx
            streams.iterators[self.dataloader_idx] = None
            self.dataloader_idx += 1
            self.batch_idx = 0
            if self.dataloader_idx < count:
                streams.open(self.dataloader_idx)
        raise StopIteration


_MODE_CLASSES: dict[str, type[_Mode]] = {
    "min_size": _MinSize, "max_size_cycle": _MaxSizeCycle, "max_size": _MaxSize, "sequential": _Sequential,
}


def mode_reader(mode: str, streams: Streams, limits: list[float] | None) -> _Mode:
    """The reader of ``mode`` over ``streams`` (not yet started)."""
    return _MODE_CLASSES[mode](streams, limits)


class CombinedLoader(Iterable[Any]):
    """Reads a collection of iterables (a dict, list or tuple of loaders, nested as you like) together.

    Args:
        iterables: one iterable, or a collection of them.
        mode: ``"min_size"`` (stop with the shortest), ``"max_size_cycle"`` (stop with the longest, starting the
            others over), ``"max_size"`` (stop with the longest, None for ended ones) or ``"sequential"`` (one
            after the other, yielding each batch with its iterable's index).

    Iterating yields ``(batch, batch_idx, dataloader_idx)``; ``batch`` has the shape of ``iterables`` (except in
    sequential mode, where it is one iterable's batch). ``len()`` needs ``iter()`` first, as in Lightning.
    """

    def __init__(self, iterables: Any, mode: str = "min_size") -> None:
        if mode not in MODES:
            raise ValueError(f"Unsupported mode {mode!r}, please select one of: {list(MODES)}.")
        self._iterables = iterables
        self._flattened, self._shape = flatten(iterables)
        self._mode = mode
        self._limits: list[float] | None = None
        self._reader: _Mode | None = None

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def iterables(self) -> Any:
        """The collection of iterables, as given (or as ``flattened`` last replaced them)."""
        return self._iterables

    @property
    def flattened(self) -> list[Any]:
        """The iterables as a flat list, in the collection's order."""
        return self._flattened

    @flattened.setter
    def flattened(self, flattened: list[Any]) -> None:
        if len(flattened) != len(self._flattened):
            raise ValueError(
                f"Mismatch in flattened length ({len(flattened)}) and existing length ({len(self._flattened)})"
            )
        self._flattened = list(flattened)
        self._iterables = unflatten(self._flattened, self._shape)

    @property
    def limits(self) -> list[float] | None:
        """At most this many batches of each iterable (one number applies to all)."""
        return self._limits

    @limits.setter
    def limits(self, limits: int | float | list[float] | None) -> None:
        if isinstance(limits, (int, float)):
            limits = [limits] * len(self._flattened)
        elif isinstance(limits, list) and len(limits) != len(self._flattened):
            raise ValueError(
                f"Mismatch in number of limits ({len(limits)}) and number of iterables ({len(self._flattened)})"
            )
        self._limits = limits

    @property
    def sampler(self) -> Any:
        """Each iterable's ``sampler`` (None where it has none), in the collection's shape."""
        return unflatten([getattr(loader, "sampler", None) for loader in self._flattened], self._shape)

    @property
    def batch_sampler(self) -> Any:
        """Each iterable's ``batch_sampler`` (None where it has none), in the collection's shape."""
        return unflatten([getattr(loader, "batch_sampler", None) for loader in self._flattened], self._shape)

    def __iter__(self) -> CombinedLoader:
        self._reader = mode_reader(self._mode, Streams(self._flattened), self._limits)
        self._reader.start()
        return self

    def __next__(self) -> tuple[Any, int, int]:
        if self._reader is None:
            raise RuntimeError("Please call `iter(combined_loader)` first.")
        batches, batch_idx, dataloader_idx = self._reader.step()
        return self.reshape(batches), batch_idx, dataloader_idx

    def __len__(self) -> int:
        if self._reader is None:
            raise RuntimeError("Please call `iter(combined_loader)` first.")
        return combined_length(self)  # type: ignore[return-value]

    def reshape(self, batches: Any) -> Any:
        """One step's flat list of batches in the shape of ``iterables`` (sequential mode: the batch as it is)."""
        return batches if self._mode == "sequential" else unflatten(batches, self._shape)

    def reset(self) -> None:
        """Forget the current pass; the next ``iter()`` starts every iterable from its beginning."""
        self._reader = None


class CombinedBatches(Iterable[Any]):
    """A CombinedLoader read as one loader: its batches alone, without batch_idx and dataloader_idx."""

    def __init__(self, combined: CombinedLoader) -> None:
        self.combined = combined

    def __iter__(self) -> Iterator[Any]:
        return (batch for batch, _, _ in iter(self.combined))

    def __len__(self) -> int:
        length = combined_length(self.combined)
        if math.isinf(length):
            raise TypeError("one of the combined loaders has no length")
        return int(length)


def combined_length(loader: CombinedLoader) -> float:
    """How many batches a pass over ``loader`` yields under its mode and limits (inf when unknown)."""
    lengths = [sized_length(iterable) for iterable in loader.flattened]
    if loader.limits is not None:
        lengths = [min(length, limit) for length, limit in zip(lengths, loader.limits)]
    if not lengths:
        return 0
    if loader.mode == "sequential":
        return sum(lengths)
    return min(lengths) if loader.mode == "min_size" else max(lengths)


# ---------------------------------------------------------------------------------------------
# Collections of loaders <-> flat lists. A container holding only numbers and strings is a leaf.
# ---------------------------------------------------------------------------------------------
def flatten(collection: Any) -> tuple[list[Any], Any]:
    """The leaves of ``collection`` in order, and its shape for ``unflatten``."""
    children = _children(collection)
    if children is None:
        return [collection], None
    leaves: list[Any] = []
    shapes = []
    for child in children:
        child_leaves, child_shape = flatten(child)
        leaves += child_leaves
        shapes.append((len(child_leaves), child_shape))
    return leaves, (collection, shapes)


def unflatten(leaves: list[Any], shape: Any) -> Any:
    """The collection ``flatten`` took apart, with ``leaves`` in its places."""
    if shape is None:
        return leaves[0]
    original, shapes = shape
    rebuilt, position = [], 0
    for count, child_shape in shapes:
        rebuilt.append(unflatten(leaves[position : position + count], child_shape))
        position += count
    if isinstance(original, dict):
        copy = original.copy()  # keeps the dict's type (OrderedDict, defaultdict) and its key order
        copy.update(zip(original.keys(), rebuilt))
        return copy
    if isinstance(original, tuple) and hasattr(original, "_fields"):
        return type(original)(*rebuilt)
    return type(original)(rebuilt)


def _children(collection: Any) -> list[Any] | None:
    if isinstance(collection, dict):
        children = list(collection.values())
    elif type(collection) in (list, tuple) or (isinstance(collection, tuple) and hasattr(collection, "_fields")):
        children = list(collection)
    else:
        return None
    if all(isinstance(child, (int, float, str)) for child in children):
        return None
    return children
