"""Evaluation steps that read their own batches: ``validation_step(self, dataloader_iter)`` (and ``test_step``,
``predict_step``), as Lightning 2.6.6 runs them.

    iterator = StepIterator(the loaders one after the other: (batch, batch_idx, dataloader_idx))
    until iterator.done:
        on_{stage}_batch_start(last batch read, its batch_idx, its dataloader_idx)     None, 0, 0 at first
        {stage}_step(iterator)             reading past the end ends the loop: no batch end
        on_{stage}_batch_end(outputs, last batch read, its batch_idx, its dataloader_idx)

What the step logs counts for the dataloader of the batch read before it (Lightning decides at batch start).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engineering.data.combined import CombinedLoader
from engineering.data.step_iterator import StepIterator, epoch_triples


def evaluation_steps_with_iterator(
    trainer: Any, stage_events: dict[str, Any], step: Callable[..., Any], loaders: list[Any], limits: list[float],
    after_step: Callable[[Any, int, int], None],
) -> None:
    """Run the steps; ``after_step(outputs, dataloader_idx at batch start, dataloader_idx of the last batch read)``
    follows each step's batch end."""
    results, hooks = trainer.results, trainer.hooks
    several = len(loaders) > 1
    combined = CombinedLoader([trainer.strategy.process_dataloader(loader) for loader in loaders], "sequential")
    combined.limits = list(limits)
    iterator = StepIterator(epoch_triples(None, combined), sum(limits))
    while not iterator.done:
        started_in = iterator.dataloader_idx
        results.dataloader_idx = started_in if several else None
        results.batch = iterator.batch
        hooks(stage_events["batch_start"], batch=iterator.batch, batch_idx=iterator.batch_idx,
              dataloader_idx=started_in)
        try:
            outputs = step(iterator)
        except StopIteration:  # the step asked for more than there was
            return
        hooks(stage_events["batch_end"], outputs=outputs, batch=iterator.batch, batch_idx=iterator.batch_idx,
              dataloader_idx=iterator.dataloader_idx)
        after_step(outputs, started_in, iterator.dataloader_idx)
