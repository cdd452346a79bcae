"""``training_step(self, dataloader_iter)``: the step reads the batches itself, as many as it likes.

As in Lightning, the iterator yields ``(batch, batch_idx, dataloader_idx)`` from the loaders combined (one loader:
its batches, ``dataloader_idx`` 0), moved to no device (the step's business), and ends once the epoch's batches
have all been read. The hooks around a step see the last batch read so far (None before the first).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from engineering.data.combined import CombinedLoader

DATALOADER_ITER = "dataloader_iter"


def takes_dataloader_iter(step: Callable[..., Any] | None) -> bool:
    """Whether a step method names ``dataloader_iter`` among its parameters (Lightning's switch); a step set to
    None (a skipped loop) does not."""
    step = getattr(step, "__wrapped__", step)
    return step is not None and DATALOADER_ITER in inspect.signature(step).parameters


_STEPS = {"fit": "training_step", "validate": "validation_step", "test": "test_step", "predict": "predict_step"}


def warn_about_dataloader_iter(fn: Any, model: Any) -> None:
    """Lightning's two warnings when a step of the module takes ``dataloader_iter``, in its words: the flavor's
    limits (any step), and that the step this entry point runs uses it."""
    steps = [getattr(model, name) for name in _STEPS.values()]
    if not any(takes_dataloader_iter(step) for step in steps):
        return
    warnings.warn(
        "You are using the `dataloader_iter` step flavor. If you consume the iterator more than once per step, the "
        "`batch_idx` argument in any hook that takes it will not match with the batch index of the last batch "
        "consumed. This might have unforeseen effects on callbacks or code that expects to get the correct index. "
        "This will also not work well with gradient accumulation. This feature is very experimental and subject to "
        "change. Here be dragons.", stacklevel=4,
    )
    step_name = _STEPS[fn.value]
    if takes_dataloader_iter(getattr(model, step_name)):
        warnings.warn(
            f"Found `dataloader_iter` argument in the `{step_name}`. Note that the support for this signature is "
            "experimental and the behavior is subject to change.", stacklevel=4,
        )


class StepIterator(Iterator[tuple[Any, int, int]]):
    """What the step receives. ``done`` once ``length`` batches were read or the loaders ran out; ``batch``,
    ``batch_idx`` and ``dataloader_idx`` are those of the last batch read."""

    def __init__(self, triples: Iterator[tuple[Any, int, int]], length: float) -> None:
        self.triples = triples
        self.length = length
        self.fetched = 0
        self.done = length == 0
        self.batch: Any = None
        self.batch_idx = 0
        self.dataloader_idx = 0

    def __iter__(self) -> StepIterator:
        return self

    def __next__(self) -> tuple[Any, int, int]:
        if self.done:
            raise StopIteration
        try:
            batch, batch_idx, dataloader_idx = next(self.triples)
        except StopIteration:
            self.done = True
            raise
        self.fetched += 1
        self.done = self.fetched >= self.length
        self.batch, self.batch_idx, self.dataloader_idx = batch, batch_idx, dataloader_idx
        return batch, batch_idx, dataloader_idx


def epoch_triples(train: Any, combined: CombinedLoader | None) -> Iterator[tuple[Any, int, int]]:
    """One epoch of ``(batch, batch_idx, dataloader_idx)``: the run's CombinedLoader, or one loader's batches."""
    if combined is not None:
        return iter(combined)
    return ((batch, batch_idx, 0) for batch_idx, batch in enumerate(train))
