"""The event bus: every signal the Trainer sends, in the order the loops send them.

    fit(model)
        setup(stage="fit")                  datamodule.setup runs just before
        on_fit_start
        on_sanity_check_start               only with validation data and num_sanity_val_steps != 0
            <validation loop, below>
        on_sanity_check_end
        on_train_start
        for each epoch:
            on_train_epoch_start
            for each batch:
                on_train_batch_start        a module hook returning -1 ends the epoch here
                    training_step               (a direct call, not an event)
                    on_before_zero_grad     first batch of an accumulation window
                    on_before_backward
                    on_after_backward
                    on_before_optimizer_step    last batch of an accumulation window
                on_train_batch_end
                log_metrics                 every log_every_n_steps optimizer steps
                <validation loop, when val_check_interval says so>
            on_train_epoch_end          module hook sits before ModelCheckpoint and EarlyStopping
            log_metrics
        on_train_end
        on_fit_end
        teardown(stage="fit")

    validation loop (test and predict loops are the same with their own names)
        on_validation_start
        on_validation_epoch_start
        for each dataloader, batch:
            on_validation_batch_start
                validation_step         (a direct call)
            on_validation_batch_end
        on_validation_epoch_end
        log_metrics
        on_validation_end

    at any time: on_exception (a hook raised; teardown follows, then the error propagates),
    on_save_checkpoint / on_load_checkpoint (while a checkpoint is written or read),
    log_hyperparams (once, when a run starts).

Every signal is sent by the Trainer, with ``pl_module`` and the payload as keyword arguments in
Lightning's positional order, so ``def on_train_batch_end(trainer, pl_module, outputs, batch,
batch_idx)`` is a valid receiver. Connect with ``sender=trainer`` to hear one Trainer only.

Receivers are called in the order they were connected (``engineering.bus.event.Event``). The bus only
notifies: the module's own hooks, and whatever steers the loop, are direct calls of the hook runner
(``engineering/bus/runner.py``), made after the callbacks have heard the event.

This file is the one table of hooks: each line below names an event, says when it fires and lists its
payload. ``Callback``'s no-op methods are generated from it; a test holds ``LightningModule``'s hooks to it.
"""

from __future__ import annotations

from engineering.bus.event import Event, EventNamespace

bus = EventNamespace()

# One line per event: its name, when it fires, and its payload (the keyword arguments after pl_module, in
# Lightning's positional order).
setup = bus.signal("setup", "a run starts, after datamodule.setup", ("stage",))
teardown = bus.signal("teardown", "a run ends, also after an error", ("stage",))
on_fit_start = bus.signal("on_fit_start", "fit begins, optimizers are ready", ())
on_fit_end = bus.signal("on_fit_end", "fit finished", ())
on_sanity_check_start = bus.signal("on_sanity_check_start", "a short validation before training", ())
on_sanity_check_end = bus.signal("on_sanity_check_end", "the sanity check finished; its metrics are dropped", ())
on_train_start = bus.signal("on_train_start", "training begins", ())
on_train_end = bus.signal("on_train_end", "training finished", ())
on_train_epoch_start = bus.signal("on_train_epoch_start", "a training epoch begins", ())
on_train_epoch_end = bus.signal("on_train_epoch_end", "a training epoch finished (after its validation)", ())
on_train_batch_start = bus.signal("on_train_batch_start", "before training_step", ("batch", "batch_idx"))
on_train_batch_end = bus.signal(
    "on_train_batch_end", "after the optimizer step; outputs is what training_step returned", ("outputs", "batch", "batch_idx")
)
on_before_zero_grad = bus.signal("on_before_zero_grad", "before optimizer_zero_grad", ("optimizer",))
on_before_backward = bus.signal(
    "on_before_backward", "before backward; the loss is already divided for accumulation", ("loss",)
)
on_after_backward = bus.signal("on_after_backward", "after backward, gradients are populated", ())
on_before_optimizer_step = bus.signal(
    "on_before_optimizer_step", "after backward, before clipping and the step", ("optimizer",)
)
on_validation_start = bus.signal("on_validation_start", "validation begins, module in eval mode", ())
on_validation_end = bus.signal("on_validation_end", "validation finished", ())
on_validation_epoch_start = bus.signal("on_validation_epoch_start", "a validation pass begins", ())
on_validation_epoch_end = bus.signal(
    "on_validation_epoch_end", "a validation pass finished, epoch metrics are ready", ()
)
on_validation_batch_start = bus.signal(
    "on_validation_batch_start", "before validation_step", ("batch", "batch_idx", "dataloader_idx")
)
on_validation_batch_end = bus.signal(
    "on_validation_batch_end", "after validation_step", ("outputs", "batch", "batch_idx", "dataloader_idx")
)
on_test_start = bus.signal("on_test_start", "testing begins, module in eval mode", ())
on_test_end = bus.signal("on_test_end", "testing finished", ())
on_test_epoch_start = bus.signal("on_test_epoch_start", "a test pass begins", ())
on_test_epoch_end = bus.signal("on_test_epoch_end", "a test pass finished, epoch metrics are ready", ())
on_test_batch_start = bus.signal("on_test_batch_start", "before test_step", ("batch", "batch_idx", "dataloader_idx"))
on_test_batch_end = bus.signal(
    "on_test_batch_end", "after test_step", ("outputs", "batch", "batch_idx", "dataloader_idx")
)
on_predict_start = bus.signal("on_predict_start", "prediction begins, module in eval mode", ())
on_predict_end = bus.signal("on_predict_end", "prediction finished", ())
on_predict_epoch_start = bus.signal("on_predict_epoch_start", "a prediction pass begins", ())
on_predict_epoch_end = bus.signal("on_predict_epoch_end", "a prediction pass finished", ())
on_predict_batch_start = bus.signal(
    "on_predict_batch_start", "before predict_step", ("batch", "batch_idx", "dataloader_idx")
)
on_predict_batch_end = bus.signal(
    "on_predict_batch_end", "after predict_step", ("outputs", "batch", "batch_idx", "dataloader_idx")
)
on_exception = bus.signal(
    "on_exception", "a hook or step raised; teardown follows, then it re-raises", ("exception",)
)
on_save_checkpoint = bus.signal("on_save_checkpoint", "a checkpoint dict is being built; add to it", ("checkpoint",))
on_load_checkpoint = bus.signal("on_load_checkpoint", "a checkpoint dict was read", ("checkpoint",))
log_metrics = bus.signal("log_metrics", "metrics for loggers, as plain floats, on global rank 0", ("metrics", "step"))
log_hyperparams = bus.signal("log_hyperparams", "hyperparameters for loggers, on global rank 0", ("params",))

#: Hooks a ``Callback`` (or a LightningModule) may define, each subscribed to the event of its name.
HOOK_EVENTS: dict[str, Event] = {name: event for name, event in bus.items() if not name.startswith("log_")}
