"""A training epoch whose step reads the batches itself: ``training_step(self, dataloader_iter)``.

    iterator = StepIterator(the epoch's (batch, batch_idx, dataloader_idx))
    until iterator.done or num_training_batches steps ran:
        on_train_batch_start(last batch read, its batch_idx)     None and 0 before the first
        training_step(iterator)                                   automatic (TrainingStep) or manual
            the iterator running out inside the step ends the epoch there: no step, no batch end
        on_train_batch_end(outputs, last batch read, its batch_idx)
        the rest as after any batch (batch_end.py end_of_batch): validation, checkpoints, stop conditions

Lightning's order and counts: ``progress.batch_idx`` counts steps, not batches; an epoch's last step is the one
after which the iterator is done or ``num_training_batches`` steps ran. No batch transfer: the step moves what
it reads.
"""

from __future__ import annotations

from typing import Any

from engineering import events
from engineering.data.batches import tell_epoch
from engineering.data.step_iterator import StepIterator, epoch_triples
from engineering.loop import schedule
from engineering.loop.evaluation import step_function
from engineering.loop.batch_end import end_of_batch
from engineering.loop.fit import TrainingStep
from engineering.loop.flush import flush_logged_metrics
from engineering.optimization.optimizers import batch_end_outputs


def run_training_epoch_with_iterator(trainer: Any, started: float) -> bool:
    """One epoch of steps that read their own batches; returns whether its last step ran."""
    progress, hooks, module, loaders = trainer.progress, trainer.hooks, trainer.lightning_module, trainer.loaders
    automatic = module.automatic_optimization
    accumulate, log_every = trainer.accumulate_grad_batches, trainer.log_every_n_steps
    step = (TrainingStep(trainer) if automatic
            else step_function(trainer, "training_step", trainer.strategy.training_step_callable()))
    validates, checkpointers = schedule.validates_this_epoch(trainer), trainer.checkpoint_callbacks
    for loader in loaders.combined.flattened if loaders.combined is not None else [loaders.train]:
        tell_epoch(loader, progress.epoch, progress.sampler_seed)
    steps = trainer.num_training_batches
    iterator = StepIterator(epoch_triples(loaders.train, loaders.combined), steps)
    while not iterator.done and progress.batch_idx < steps:
        step_idx = progress.batch_idx
        trainer.results.batch = iterator.batch
        if hooks(events.on_train_batch_start, batch=iterator.batch, batch_idx=iterator.batch_idx) == -1:
            return False
        last_step = step_idx + 1 >= steps
        window_start, window_end = schedule.accumulation_window(step_idx, accumulate, last_step)
        try:
            if automatic:
                outputs = step(iterator, step_idx, window_start, window_end, last_step)
            else:
                trainer.results.hook = "training_step"
                outputs = step(iterator)
        except StopIteration:  # the step asked for more than there was: the epoch ends here
            return True
        progress.batch_idx = step_idx + 1
        progress.total_batch_idx += 1
        trainer.results.batch = iterator.batch
        end_outputs = (batch_end_outputs(outputs, automatic, accumulate)
                       if hooks.reads(events.on_train_batch_end, "outputs") else None)
        hooks(events.on_train_batch_end, outputs=end_outputs, batch=iterator.batch, batch_idx=iterator.batch_idx)
        if (progress.batches_that_stepped + 1) % log_every == 0 or progress.should_stop:
            flush_logged_metrics(trainer, "step")
        is_last = iterator.done or last_step
        if end_of_batch(trainer, step_idx, is_last, window_end, started, validates, checkpointers):
            return is_last
    return True
