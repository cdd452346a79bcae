"""The fit loop: epochs, training batches, and one training step, read top to bottom in this file.

``run_fit`` holds the epochs, ``run_training_epoch`` the batches, ``TrainingStep`` one batch of automatic
optimization. What follows a batch (validation, checkpoints, stop conditions, signals) is in
``loop/batch_end.py``, the schedules it asks in ``loop/schedule.py``; the evaluation loops in
``loop/evaluation.py``. Hooks go through ``trainer.hooks`` (``bus/runner.py``): the callbacks hear them
over the bus, then the module's own hook is called directly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch

from engineering import events
from engineering.bus.callback import overrides
from engineering.checkpointing.checkpoint import restore_rng_states, write_requested_checkpoints
from engineering.data.loaders import reload_train_loader_if_due
from engineering.data.step_iterator import takes_dataloader_iter
from engineering.data.training_passes import training_batches
from engineering.data.transfer import batch_mover, unchanged
from engineering.errors import MisconfigurationError
from engineering.loop import schedule
from engineering.loop.evaluation import run_sanity_check, step_function, takes_batch_idx
from engineering.loop import advice
from engineering.loop.batch_end import batch_end_may_act, end_of_batch, stop_for_signal
from engineering.loop.flush import flush_logged_metrics
from engineering.loop.state import RunningStage
from engineering.loop.tbptt import train_through_time
from engineering.optimization.optimizers import batch_end_outputs, calls_closure_once, loss_from, step_schedulers
from engineering.optimization.nonfinite import NonFiniteGuard
from engineering.profiler import PassThroughProfiler
from research import LightningModule


def run_fit(trainer: Any, resumed_rng: tuple[dict[str, Any] | None, dict[str, Any] | None]) -> None:
    """Train until an epoch, step or time limit, or until someone sets ``trainer.should_stop``.

        on_fit_start
        sanity check: validation over num_sanity_val_steps batches; its metrics are dropped (not when resuming)
        Lightning's warnings (max_epochs unset, log_every_n_steps > batches, modules in eval mode)
        on_train_start
        while epochs remain:
            on_train_epoch_start
            for batch_idx, batch in the training batches (from progress.batch_idx when resuming,
                                                          skipped without being read):
                batch → device                     on_before_batch_transfer, transfer_batch_to_device, …
                on_train_batch_start               the module returning -1 ends the epoch
                automatic optimization             TrainingStep: training_step, zero_grad, backward, clip,
                                                   optimizer step, step-interval schedulers (once per time
                                                   split with truncated_bptt_steps)
                or manual: training_step           the module steps its own optimizers
                on_train_batch_end
                metrics to loggers every log_every_n_steps
                validation, when val_check_interval says so; then plateau schedulers
                the batch is complete: write the checkpoints ModelCheckpoint asked for during it
                a signal? Ctrl-C: interrupt; SIGTERM: save, exit (also answered between validation batches)
                stop at max_steps, max_time, or should_stop (once min_epochs and min_steps are met)
            epoch metrics; on_train_epoch_end; epoch-interval plateau schedulers; metrics to loggers;
            torchmetrics objects reset
            epoch += 1; the epoch is complete: write requested checkpoints; preempted? save, exit
        print why fit stopped ("`Trainer.fit` stopped: `max_epochs=3` reached.")
        on_train_end
        on_fit_end

    Checkpoints are written only where a batch or an epoch is complete, so that resuming from one repeats
    nothing and skips nothing. ``resumed_rng`` holds the checkpoint's random states (None when starting fresh):
    those it was taken with, put back before the epoch when it was written between epochs, else once the
    epoch's data iterator exists; and, mid-epoch, those the epoch's iterator was created from, so that the
    user's own sampler draws the same shuffled order again.
    """
    progress, hooks, results = trainer.progress, trainer.hooks, trainer.results
    module = trainer.lightning_module
    hooks(events.on_fit_start)
    _sanity_check_if_due(trainer)
    advice.warn_about_fit(trainer, module)  # modes are left as the user set them, as in Lightning
    hooks(events.on_train_start)
    started = time.monotonic()
    rng_states, epoch_rng_states = resumed_rng
    while not schedule.fit_done(trainer):
        if rng_states is not None and progress.batch_idx == 0:
            restore_rng_states(rng_states, trainer.train_dataloader)
            rng_states = None
        if progress.batch_idx == 0:  # a run resumed mid-epoch keeps the aggregates its checkpoint restored
            reload_train_loader_if_due(trainer)
            results.start_epoch(RunningStage.TRAINING)
        results.stage = RunningStage.TRAINING
        hooks(events.on_train_epoch_start)
        ran_last_batch = run_training_epoch(trainer, started, rng_states, epoch_rng_states)
        rng_states = epoch_rng_states = None
        _end_training_epoch(trainer, ran_last_batch)
    advice.say_why_fit_stopped(trainer)
    hooks(events.on_train_end)
    hooks(events.on_fit_end)


def _sanity_check_if_due(trainer: Any) -> None:
    """The sanity check (not when resuming). reload_dataloaders_every_n_epochs counts the validation loaders from
    it when the first epoch validates, as Lightning does."""
    if not schedule.sanity_check_due(trainer):
        return
    run_sanity_check(trainer)
    trainer.loaders.val_read = True
    if schedule.validates_this_epoch(trainer):
        trainer.loaders.val_loaded_epoch = trainer.progress.epoch


def _end_training_epoch(trainer: Any, ran_last_batch: bool) -> None:
    progress, results = trainer.progress, trainer.results
    results.stage = RunningStage.TRAINING
    results.end_epoch(RunningStage.TRAINING)
    trainer.hooks(events.on_train_epoch_end)
    if ran_last_batch and trainer.lightning_module.automatic_optimization:
        step_schedulers(trainer, "epoch", progress.epoch, plateau=True)
    results.take_unlogged("step")  # step values not flushed by now are never logged (Lightning)
    flush_logged_metrics(trainer, "epoch", step=progress.batches_that_stepped - 1)
    results.reset_metric_objects(RunningStage.TRAINING)
    progress.epoch += 1
    progress.batch_idx = 0
    write_requested_checkpoints(trainer, trainer.checkpoint_callbacks)
    signum = schedule.signal_agreed(trainer, every=1)
    if signum:
        stop_for_signal(trainer, signum)


def run_training_epoch(trainer: Any, started: float, rng_states: dict[str, Any] | None,
                       epoch_rng_states: dict[str, Any] | None) -> bool:
    """One epoch of training batches; returns whether its last batch ran."""
    if takes_dataloader_iter(trainer.lightning_module.training_step):  # training_step(self, dataloader_iter)
        from engineering.loop.fit_with_iterator import run_training_epoch_with_iterator  # builds on this module

        return run_training_epoch_with_iterator(trainer, started)
    progress, hooks, module = trainer.progress, trainer.hooks, trainer.lightning_module
    automatic = module.automatic_optimization
    accumulate, log_every = trainer.accumulate_grad_batches, trainer.log_every_n_steps  # read once an epoch
    batch_start_heard = hooks.heard(events.on_train_batch_start)
    batch_end_heard = hooks.heard(events.on_train_batch_end)
    step = (TrainingStep(trainer) if automatic
            else step_function(trainer, "training_step", trainer.strategy.training_step_callable()))
    plain = automatic and module.truncated_bptt_steps == 0 and step.is_plain
    run_step = None if plain else _step_runner(trainer, step)
    move = batch_mover(trainer)
    profiling = not isinstance(trainer.profiler, PassThroughProfiler)
    validates, checkpointers = schedule.validates_this_epoch(trainer), trainer.checkpoint_callbacks
    eventful = batch_end_may_act(trainer, validates)
    batches = training_batches(trainer, rng_states, epoch_rng_states)
    if profiling:
        batches = schedule.timed_fetches(batches, trainer.profiler.profile)

    for batch_idx, batch, is_last in batches:
        if move is not unchanged or profiling:  # the no-op transfer is skipped unless it is being timed
            with trainer.profiler.profile("batch_transfer"):
                batch = move(batch, 0)
        trainer.results.batch = batch
        if batch_start_heard:  # an event nobody hears costs not even a call
            if hooks(events.on_train_batch_start, batch=batch, batch_idx=batch_idx) == -1:
                return False
        if run_step is None:  # a plain step: every batch is a window of one
            outputs, window_end = step.plain(batch, batch_idx), True
        else:
            outputs, window_end = run_step(batch, batch_idx, is_last)
        progress.batch_idx = batch_idx + 1
        progress.total_batch_idx += 1
        if batch_end_heard:  # only then, and for a hook that reads them, are the outputs detached and copied
            end_outputs = None
            if hooks.reads(events.on_train_batch_end, "outputs"):  # a lone loss without a call
                end_outputs = ({"loss": outputs.detach()} if type(outputs) is torch.Tensor and automatic
                               and accumulate == 1 else batch_end_outputs(outputs, automatic, accumulate))
            hooks(events.on_train_batch_end, outputs=end_outputs, batch=batch, batch_idx=batch_idx)
        if (progress.batches_that_stepped + 1) % log_every == 0 or progress.should_stop:
            flush_logged_metrics(trainer, "step")

        if eventful or (is_last and validates) or progress.should_stop or trainer.received_signal:
            if end_of_batch(trainer, batch_idx, is_last, window_end, started, validates, checkpointers):
                return is_last
            continue
        # What end_of_batch does when nothing else can be due, in its order: count the step, write the
        # checkpoints asked for (the last batch's wait for the end of the epoch).
        if window_end:
            progress.batches_that_stepped += 1
        if not is_last:
            for checkpointer in checkpointers:  # most batches request nothing: no call then
                if checkpointer.pending_writes:
                    checkpointer.write_requested(trainer)
    return True


def _step_runner(trainer: Any, step: Any) -> Callable[[Any, int, bool], tuple[Any, bool]]:
    """How a batch runs when its step is not plain: ``(batch, batch_idx, is_last) → (outputs, window_end)``, with
    accumulation windows, truncated backpropagation through time, or manual optimization."""
    module, accumulate = trainer.lightning_module, trainer.accumulate_grad_batches
    automatic, with_batch_idx = module.automatic_optimization, takes_batch_idx(module.training_step)
    through_time = automatic and module.truncated_bptt_steps > 0

    def run(batch: Any, batch_idx: int, is_last: bool) -> tuple[Any, bool]:
        window_start, window_end = schedule.accumulation_window(batch_idx, accumulate, is_last)
        if through_time:
            return train_through_time(step, module, batch, batch_idx, is_last), window_end
        if automatic:
            return step(batch, batch_idx, window_start, window_end, is_last), window_end
        trainer.results.hook = "training_step"
        return (step(batch, batch_idx) if with_batch_idx else step(batch)), window_end

    return run


_NO_CONTEXT = contextlib.nullcontext()


class TrainingStep:
    """One batch of automatic optimization, in Lightning's order:

        training_step                     under the precision's forward context (autocast)
        zero the gradients                first batch of an accumulation window: on_before_zero_grad, zero_grad
                                          (before training_step when neither is overridden, nothing hears
                                          on_before_zero_grad and no profiler runs: as a hand-written loop)
        backward(loss / accumulate)       the loss scaled for fp16; on_before_backward, backward, on_after_backward
        ---- last batch of the window only ----
        unscale the gradients             fp16 with a GradScaler: hooks and clipping see the true gradients
        on_before_optimizer_step
        clip                              when gradient_clip_val is set or configure_gradient_clipping overridden
        optimizer step                    a GradScaler skips it on inf/nan, so does on_nonfinite="skip"/"stop";
                                          then global_step += 1
        step-interval schedulers; at the epoch's last batch, epoch-interval ones (not ReduceLROnPlateau)

    The module's ``optimizer_zero_grad`` and ``backward`` hooks are called only when overridden; otherwise
    their default (``zero_grad(set_to_none=True)``, ``loss.backward()``) runs right here. When the module
    overrides ``optimizer_step``, or the optimizer's ``step()`` must call a closure itself (LBFGS), everything
    above the line becomes the closure that ``optimizer_step`` hands to ``optimizer.step(closure)``, as in
    Lightning. When nothing of this is watched or changed (no hook heard or overridden, no clipping, scaling,
    accumulation, scheduler or profiler), ``plain`` runs the batch in a hand-written loop's four calls. Built once
    per epoch: what cannot change between batches is looked up once.
    """

    def __init__(self, trainer: Any) -> None:
        module, strategy, profiler, hooks = trainer.lightning_module, trainer.strategy, trainer.profiler, trainer.hooks
        cls = type(module)
        self.trainer, self.module, self.hooks, self.progress = trainer, module, hooks, trainer.progress
        self.optimizer = trainer.lightning_optimizers[0]
        self.raw_optimizer = self.optimizer.optimizer
        self.accumulate = trainer.accumulate_grad_batches
        self.precision = strategy.precision
        self.strategy = strategy
        # Under the precision's forward context (autocast); in full precision the step itself, no wrapper.
        self.training_step = profiler.timed("training_step",
                                            self.precision.wrap_step(strategy.training_step_callable()))
        self.with_batch_idx = takes_batch_idx(module.training_step)
        profiling = not isinstance(profiler, PassThroughProfiler)
        self.zero_grad = (profiler.timed("zero_grad", module.optimizer_zero_grad)
                          if profiling or overrides(cls, LightningModule, "optimizer_zero_grad") else None)
        self.backward = (profiler.timed("backward", module.backward)
                         if profiling or overrides(cls, LightningModule, "backward") else None)
        self.optimizer_step = profiler.timed("optimizer_step", module.optimizer_step)
        self.step_optimizer = profiler.timed("optimizer_step", strategy.stepper(self.raw_optimizer))
        self.through_closure = (overrides(cls, LightningModule, "optimizer_step")
                                or not calls_closure_once(self.raw_optimizer))
        self.clips = bool(trainer.gradient_clip_val) or overrides(cls, LightningModule, "configure_gradient_clipping")
        self.heard = {event for event in (events.on_before_zero_grad, events.on_before_backward,
                                          events.on_after_backward, events.on_before_optimizer_step)
                      if hooks.heard(event)}
        self.has_schedulers = bool(trainer.lr_scheduler_configs)
        # Unwatched, the zeroing frees the last step's gradients before the forward pass allocates: less memory,
        # and 6 µs/step less on bench/overhead.py's model. Lightning zeroes after training_step.
        self.zeroes_first = self.zero_grad is None and events.on_before_zero_grad not in self.heard
        self.between_backward_and_step = (self.precision.scales_loss or self.clips
                                          or events.on_before_optimizer_step in self.heard)
        # Nothing watches or changes the step, and no closure is needed: ``plain`` runs it.
        self.is_plain = (self.zeroes_first and self.backward is None and not self.through_closure and not self.heard
                         and not self.between_backward_and_step and not self.has_schedulers
                         and self.accumulate == 1 and self.with_batch_idx)
        if trainer.on_nonfinite is not None:  # without a policy the step is not wrapped at all
            guard = NonFiniteGuard(trainer, trainer.on_nonfinite, self.through_closure)
            self.training_step = guard.checked(self.training_step)
            self.step_optimizer = guard.guarded(self.step_optimizer, self.raw_optimizer)

    def __call__(self, batch: Any, batch_idx: int, window_start: bool, window_end: bool, is_last: bool,
                 *step_args: Any, steps_schedulers: bool = True) -> Any:
        """Run the batch; return what training_step returned. ``step_args`` follow batch and batch_idx in the
        call to training_step (the hidden state, in truncated backpropagation through time)."""
        if not window_end:  # inside an accumulation window: no step, and no gradient all-reduce yet
            with self.strategy.block_gradient_sync():
                return self.forward_backward(batch, batch_idx, window_start, step_args)[0]
        if self.through_closure:
            outputs = self._step_through_closure(batch, batch_idx, window_start, step_args)
        else:
            outputs, loss = self.forward_backward(batch, batch_idx, window_start, step_args)
            if self.between_backward_and_step:
                self.before_step(loss is not None)
            self.step_optimizer()
            self.progress.global_step += 1
        if self.has_schedulers and steps_schedulers:  # non-plateau schedulers step right after the optimizer
            step_schedulers(self.trainer, "step", batch_idx, plateau=False)
            if is_last:
                step_schedulers(self.trainer, "epoch", self.progress.epoch, plateau=False)
        return outputs

    def plain(self, batch: Any, batch_idx: int) -> Any:
        """What ``__call__`` does when ``is_plain``, in the order and with the calls of a hand-written loop:
        zero_grad, training_step, backward, optimizer step."""
        self.raw_optimizer.zero_grad(set_to_none=True)
        self.trainer.results.hook = "training_step"
        outputs = self.training_step(batch, batch_idx)
        loss = outputs if type(outputs) is torch.Tensor and outputs.dim() == 0 else loss_from(outputs)
        if loss is None:
            advice.training_step_returned_none()
        else:
            loss.backward()
        self.step_optimizer()
        self.progress.global_step += 1
        return outputs

    def forward_backward(self, batch: Any, batch_idx: int, window_start: bool,
                         step_args: tuple[Any, ...]) -> tuple[Any, torch.Tensor | None]:
        """training_step → zero_grad (window start; before training_step when unwatched) → backward; returns the
        step's outputs and its loss."""
        hooks, optimizer, heard = self.hooks, self.optimizer, self.heard
        if window_start and self.zeroes_first:
            self.raw_optimizer.zero_grad(set_to_none=True)
            window_start = False
        self.trainer.results.hook = "training_step"
        if self.with_batch_idx:
            outputs = self.training_step(batch, batch_idx, *step_args)
        else:
            outputs = self.training_step(batch, *step_args)
        loss = outputs if type(outputs) is torch.Tensor and outputs.dim() == 0 else loss_from(outputs)
        if window_start:  # after training_step, as Lightning's closure does
            if events.on_before_zero_grad in heard:
                hooks(events.on_before_zero_grad, optimizer=self.raw_optimizer)
            if self.zero_grad is None:
                optimizer.zero_grad(set_to_none=True)
            else:
                self.zero_grad(self.progress.epoch, batch_idx, optimizer)
        if loss is not None:
            scaled = loss / self.accumulate if self.accumulate > 1 else loss
            if self.precision.scales_loss:  # fp16: hooks see the loss backward really gets, as in Lightning
                scaled = self.precision.scale_loss(scaled)
            if events.on_before_backward in heard:
                hooks(events.on_before_backward, loss=scaled)
            if self.backward is None:
                scaled.backward()
            else:
                self.backward(scaled)
            if events.on_after_backward in heard:
                hooks(events.on_after_backward)
        else:
            advice.training_step_returned_none()
        return outputs, loss

    def before_step(self, backward_ran: bool) -> None:
        """Between the last backward of a window and the optimizer step: unscale, on_before_optimizer_step, clip."""
        optimizer = self.raw_optimizer
        if backward_ran and self.precision.scales_loss:  # hooks and clipping see true gradients
            self.precision.unscale_gradients(optimizer)
        if events.on_before_optimizer_step in self.heard:
            self.hooks(events.on_before_optimizer_step, optimizer=optimizer)
        if self.clips:
            trainer = self.trainer
            self.module.configure_gradient_clipping(
                optimizer, trainer.gradient_clip_val, trainer.gradient_clip_algorithm
            )

    def _step_through_closure(self, batch: Any, batch_idx: int, window_start: bool, step_args: tuple[Any, ...]) -> Any:
        ran: list[Any] = []

        def closure() -> torch.Tensor | None:
            outputs, loss = self.forward_backward(batch, batch_idx, window_start, step_args)
            ran.append(outputs)
            return loss

        self.trainer.results.hook = "optimizer_step"  # self.log may be called there, before the closure runs
        self.optimizer_step(self.progress.epoch, batch_idx, self.optimizer, closure)
        if not ran:
            raise MisconfigurationError(
                "optimizer_step was overridden without running the closure. Call "
                "`optimizer.step(closure=optimizer_closure)` in it so training_step and backward run."
            )
        return ran[-1]
