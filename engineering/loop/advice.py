"""Lightning's warnings and refusals about a run's set-up, in its words, so a user searching for one finds it.

Each function is called once, where Lightning checks the same thing; warnings go out on global rank 0 only.
"""

from __future__ import annotations

import warnings
from typing import Any

from engineering.bus.callback import defines
from engineering.errors import MisconfigurationError
from engineering.loop import schedule
from engineering.loop.state import TrainerFn
from engineering.utilities import is_picklable
from research import LightningModule

_EVALUATION_STEPS = {TrainerFn.VALIDATING: "validation_step", TrainerFn.TESTING: "test_step"}


def require_evaluation_step(fn: TrainerFn, model: Any) -> None:
    """``trainer.validate`` / ``trainer.test`` need the step they run: refused, as Lightning does, before any hook."""
    if fn is TrainerFn.PREDICTING and model.predict_step is None:
        raise MisconfigurationError("`predict_step` cannot be None to run `Trainer.predict`")
    step = _EVALUATION_STEPS.get(fn)
    if step is not None and not defines(model, LightningModule, step):
        raise MisconfigurationError(f"No `{step}()` method defined to run `Trainer.{fn.value}`.")


def drop_unpicklable_hyperparameters(model: Any) -> None:
    """A hyperparameter pickle cannot write (a lambda, a lock) would break every checkpoint: removed from
    ``model.hparams`` with Lightning's warning, as its run does first. ``hparams_initial`` (what loggers get) keeps it."""
    for name in [name for name, value in model.hparams.items() if not is_picklable(value)]:
        _warn(f"Attribute '{name}' removed from hparams because it cannot be pickled. You can suppress this warning by"
              f" setting `self.save_hyperparameters(ignore=['{name}'])`.")
        del model.hparams[name]


def validation_step_missing(model: Any) -> bool:
    """True, with Lightning's warning, when validation loaders are given but the module cannot validate."""
    if defines(model, LightningModule, "validation_step"):
        return False
    _warn("You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop.")
    return True


def warn_validation_without_loaders(model: Any) -> None:
    """Lightning's warning when the module can validate but fit got no validation data (nothing validates)."""
    if defines(model, LightningModule, "validation_step"):
        _warn("You defined a `validation_step` but have no `val_dataloader`. Skipping val loop.")


def warn_about_fit(trainer: Any, model: Any) -> None:
    """When fit starts: a logging interval longer than the epoch, modules in eval mode, limits already reached."""
    if not trainer.is_global_zero:
        return
    if schedule.fit_done(trainer):
        nothing_left_to_fit(trainer)
    batches = trainer.num_training_batches
    if trainer.loggers and batches < trainer.log_every_n_steps and not trainer.fast_dev_run:
        _warn(f"The number of training batches ({batches}) is smaller than the logging interval "
              f"Trainer(log_every_n_steps={trainer.log_every_n_steps}). Set a lower value for log_every_n_steps if "
              "you want to see logs for the training epoch.")
    in_eval_mode = [name for name, module in model.named_modules() if not module.training]
    if in_eval_mode:
        _warn(f"Found {len(in_eval_mode)} module(s) in eval mode at the start of training. This may lead to "
              "unexpected behavior during training. If this is intentional, you can ignore this warning.")


def say_max_epochs_unset(trainer: Any) -> None:
    """When fit starts without max_epochs, max_steps or max_time: the 1000-epoch default, as Lightning says it."""
    if trainer.is_global_zero:
        _warn("`max_epochs` was not set. Setting it to 1000 epochs. To train without an epoch limit, "
              "set `max_epochs=-1`.")


def training_step_returned_none() -> None:
    """Lightning's warning for a batch without a loss under automatic optimization (the batch trains nothing)."""
    _warn("`training_step` returned `None`. If this was on purpose, ignore this warning...")


def say_why_fit_stopped(trainer: Any) -> None:
    """Once, when fit ends normally: the limit that ended it (Lightning prints the same line)."""
    if not trainer.is_global_zero:
        return
    reason = trainer.progress.stop_reason
    if reason == "max_epochs":
        print(f"`Trainer.fit` stopped: `max_epochs={trainer.max_epochs!r}` reached.")
    elif reason == "max_steps":
        print(f"`Trainer.fit` stopped: `max_steps={trainer.max_steps!r}` reached.")
    elif reason == "max_time":
        print(f"`Trainer.fit` stopped: `max_time={trainer.max_time!r}` seconds reached.")
    elif reason == "should_stop":
        print("`Trainer.fit` stopped: `trainer.should_stop` was set.")


def nothing_left_to_fit(trainer: Any) -> None:
    """A fit whose limits are already reached trains nothing; Lightning only prints why it stopped."""
    progress = trainer.progress
    limit = {"max_steps": f"max_steps={trainer.max_steps}", "max_epochs": f"max_epochs={trainer.max_epochs}"}
    _warn(f"Trainer.fit trained nothing: this run is already at epoch {progress.epoch}, global_step "
          f"{progress.global_step}, so `{limit.get(progress.stop_reason, progress.stop_reason)}` is reached before "
          "the first batch. To train on, raise the limit (`trainer.max_epochs = ...` or `trainer.max_steps = ...`) "
          "and call fit again; to train from the start, use a new Trainer.")


def fit_continues_for_another_model(trainer: Any, model: Any) -> None:
    """A Trainer that already fitted one model keeps its progress; a new model starts from there (Lightning too,
    silently)."""
    if not trainer.is_global_zero:
        return
    progress = trainer.progress
    _warn(f"This Trainer already fitted {type(trainer.lightning_module).__name__} up to epoch {progress.epoch}, "
          f"global_step {progress.global_step}; fitting a different model ({type(model).__name__}) on it continues "
          "from there, not from the start. Use a new Trainer to train a new model from scratch.")


def say_resumed(trainer: Any, fn: TrainerFn, checkpoint_path: Any) -> None:
    """After a checkpoint was read back, as Lightning says it."""
    if trainer.is_global_zero:
        what = "Restored all states" if fn is TrainerFn.FITTING else "Loaded model weights"
        print(f"{what} from the checkpoint at {checkpoint_path}")


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)
