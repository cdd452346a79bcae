"""Several training loaders in one epoch, resumable mid-epoch to the exact batch.

Each loader's pass over its data is recorded as it goes: the random state its iterator was opened with
(``iter(loader)`` draws the workers' base seed), the one its first batch was read with (a shuffling sampler draws
its order then), whether it has ended once this epoch, and how many batches the pass has read. A checkpoint taken
mid-epoch stores these records; a resumed run reopens every pass from them and leaves out the batches already
read without loading them (a plain DataLoader gets a batch sampler that draws the same order and skips them).

``training_batches`` is where the fit loop gets an epoch's batches, from one loader or several.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engineering.checkpointing.checkpoint import capture_rng_states, restore_rng_states
from engineering.data.batches import epoch_batches, flagged, rebuilt_skipping, tell_epoch
from engineering.data.combined import CombinedLoader, Streams, mode_reader


class RecordedStreams(Streams):
    """Streams that note the random states each pass began with, so a checkpoint can store them."""

    def __init__(self, originals: list[Any], to_device: Callable[[Iterable[Any]], Iterable[Any]]) -> None:
        super().__init__([to_device(loader) for loader in originals])
        self.originals = originals  # the loaders as given: their generators are part of the random state
        self.to_device = to_device
        self.opened: list[dict[str, Any] | None] = [None] * len(originals)
        self.first_read: list[dict[str, Any] | None] = [None] * len(originals)

    def open(self, index: int) -> None:
        self.opened[index] = capture_rng_states(self.originals[index])
        self.first_read[index] = None
        super().open(index)

    def read(self, index: int) -> Any:
        if self.reads[index] == 0 and self.iterators[index] is not None:
            self.first_read[index] = capture_rng_states(self.originals[index])
        return super().read(index)

    def records(self) -> list[dict[str, Any]]:
        """What a checkpoint stores to reopen every pass where it is."""
        return [
            {"opened": self.opened[index] if self.iterators[index] is not None else None,
             "first_read": self.first_read[index], "reads": self.reads[index], "exhausted": self.exhausted[index]}
            for index in range(len(self.loaders))
        ]

    def reopen(self, records: list[dict[str, Any]]) -> None:
        """Every pass as ``records`` left it: opened from the same random state, its read batches left out."""
        if len(records) != len(self.loaders):
            raise RuntimeError(
                f"The checkpoint was taken while training on {len(records)} loaders, but this run has "
                f"{len(self.loaders)}. Resume with the same train_dataloader collection that wrote it."
            )
        for index, record in enumerate(records):
            self.exhausted[index] = record["exhausted"]
            if record["opened"] is None:
                continue
            self._reopen(index, record)

    def _reopen(self, index: int, record: dict[str, Any]) -> None:
        original, reads = self.originals[index], record["reads"]
        self.opened[index], self.first_read[index] = record["opened"], record["first_read"]
        restore_rng_states(record["opened"], original)
        if reads == 0:
            self.iterators[index], self.reads[index] = iter(self.loaders[index]), 0
            return
        if getattr(original, "num_workers", 0) == 0:
            around_draw = self._drawing_order(index, record["first_read"])
        else:  # with workers the order is drawn inside iter(), right after the base seed: as it was
            around_draw = (_nothing, _nothing)
        skipping = rebuilt_skipping(original, reads, around_draw)
        if skipping is not None:
            self.iterators[index] = iter(self.to_device(skipping))
        else:  # no batch sampler to skip with: read the batches and drop them
            iterator = iter(self.loaders[index])
            restore_rng_states(record["first_read"], original)
            for _ in range(reads):
                next(iterator, None)
            self.iterators[index] = iterator
        self.reads[index] = reads

    def _drawing_order(self, index: int, first_read: dict[str, Any]) -> tuple[Callable[[], None], Callable[[], None]]:
        """Around the resumed pass drawing its order: the random state of the original first read, then back."""
        original, current = self.originals[index], []

        def before() -> None:
            current.append(capture_rng_states(original))
            restore_rng_states(first_read, original)

        def after() -> None:
            restore_rng_states(current.pop(), original)

        return before, after


def _nothing() -> None:
    pass


def combined_epoch_batches(
    combined: CombinedLoader, limit: float, start: int, resumed: list[dict[str, Any]] | None,
    to_device: Callable[[Iterable[Any]], Iterable[Any]], order_drawn: Callable[[], None],
    on_streams: Callable[[RecordedStreams], None],
) -> Iterator[tuple[int, Any, bool]]:
    """The training batches of one epoch over ``combined``, from batch ``start`` on, as ``(batch_idx, batch,
    is_last)``; each batch has the collection's shape (alone in sequential mode). ``resumed`` (mid-epoch) are
    the checkpoint's pass records (without them, the first ``start`` batches are read and dropped);
    ``order_drawn`` is called once every pass is open, before the first batch.
    ``on_streams`` receives the streams, whose ``records()`` a checkpoint stores."""
    streams = RecordedStreams(combined.flattened, to_device)
    on_streams(streams)
    if limit <= 0 or start >= limit:
        order_drawn()
        return iter(())
    reader = mode_reader(combined.mode, streams, combined.limits)
    if start and resumed is not None:
        streams.reopen(resumed)
        reader.resume_at(start)
    else:
        reader.start()
        for _ in range(start):  # a checkpoint without pass records (Lightning's): read past what was trained
            try:
                reader.step()
            except StopIteration:
                break
    order_drawn()

    def batches() -> Iterator[Any]:
        while True:
            try:
                flat, _, _ = reader.step()
            except StopIteration:
                return
            yield combined.reshape(flat)

    return flagged(batches(), limit, start, sized=math.isfinite(limit))


def training_batches(trainer: Any, rng_states: dict[str, Any] | None,
                      epoch_rng_states: dict[str, Any] | None) -> Iterator[tuple[int, Any, bool]]:
    """This epoch's ``(batch_idx, batch, is_last)`` from ``progress.batch_idx`` on, in the order an uninterrupted
    run reads them; several loaders are read together as their CombinedLoader says."""
    progress, loaders = trainer.progress, trainer.loaders
    loader = trainer.train_dataloader
    if progress.batch_idx == 0:  # the state this epoch's order is drawn from, for a checkpoint taken mid-epoch
        loaders.epoch_rng_states = capture_rng_states(loader)
    elif epoch_rng_states is not None:  # resuming mid-epoch: draw the same order again
        restore_rng_states(epoch_rng_states, loader)
        loaders.epoch_rng_states = epoch_rng_states

    def put_back_checkpoint_rng() -> None:  # resuming mid-epoch: the state the checkpoint saw after its last batch
        if rng_states is not None:
            restore_rng_states(rng_states, loader)

    if loaders.combined is None:
        return epoch_batches(
            loader, trainer.num_training_batches, progress.epoch, progress.sampler_seed,
            progress.batch_idx, trainer.strategy.process_dataloader, put_back_checkpoint_rng,
        )
    for each in loaders.combined.flattened:
        tell_epoch(each, progress.epoch, progress.sampler_seed)
    resumed, loaders.resumed_passes = loaders.resumed_passes if progress.batch_idx else None, None
    return combined_epoch_batches(
        loaders.combined, trainer.num_training_batches, progress.batch_idx, resumed,
        trainer.strategy.process_dataloader, put_back_checkpoint_rng,
        on_streams=lambda streams: setattr(loaders, "train_streams", streams),
    )
