"""Which loaders a run reads and how many batches of each: given loaders, else the datamodule's, else the module's.

Each function fills the run's ``Loaders`` (``loop/state.py``); the Trainer reads them through its properties.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from engineering.bus.callback import defines
from engineering.config import val_check_batch
from engineering.data.batches import (
    as_loader_list, limited_batches, sized_length, with_resumable_sampler, without_shuffle,
)
from engineering.errors import MisconfigurationError
from engineering.loop.state import Loaders, TrainerFn
from research import LightningDataModule, LightningModule


def loaders_from(given: Any, datamodule: Any, model: Any, hook: str) -> Any:
    """``given`` when not None; else what the datamodule's or the module's ``hook`` (e.g. "train_dataloader")
    returns, the first that defines it; None when neither does."""
    if given is not None:
        return given
    for source, base in ((datamodule, LightningDataModule), (model, LightningModule)):
        if source is not None and defines(source, base, hook):
            return getattr(source, hook)()
    if datamodule is not None and getattr(datamodule, hook, None) is not None:
        try:
            return getattr(datamodule, hook)()
        except NotImplementedError:
            return None
    return None


def set_up_fit_loaders(trainer: Any, model: Any, datamodule: Any, train: Any, val: Any) -> None:
    """The training loader (with a resumable sampler where the Trainer may replace it) and the validation loaders."""
    loaders: Loaders = trainer.loaders
    train = loaders_from(train, datamodule, model, "train_dataloader")
    if train is None:
        raise MisconfigurationError(
            "fit needs training data: pass train_dataloaders, a datamodule, or define train_dataloader()."
        )
    if trainer.overfit_batches:
        train = without_shuffle(train)
    if trainer.use_distributed_sampler and trainer.world_size > 1:  # as Lightning: only across processes
        train = with_resumable_sampler(train, trainer.world_size, trainer.global_rank)
    loaders.train = train
    loaders.num_training_batches = limited_batches(train, trainer.limit_train_batches, "limit_train_batches")
    if loaders.num_training_batches == 0 and trainer.limit_train_batches != 0:
        raise MisconfigurationError(
            "The training dataloader is empty: it yielded no batches. Check the dataset and batch_size "
            "(drop_last=True with fewer samples than one batch gives none)."
        )
    loaders.val_as_given = loaders_from(val, datamodule, model, "val_dataloader")
    loaders.val = as_loader_list(loaders.val_as_given)
    _warn_about_empty(trainer, loaders.val, "validation")
    loaders.num_val_batches = [limited_batches(d, trainer.limit_val_batches, "limit_val_batches") for d in loaders.val]
    sanity = math.inf if trainer.num_sanity_val_steps == -1 else trainer.num_sanity_val_steps
    loaders.num_sanity_val_batches = [min(sanity, count) for count in loaders.num_val_batches]
    loaders.val_check_batch = val_check_batch(trainer.val_check_interval, loaders.num_training_batches)
    _check_val_check_interval(trainer, loaders.num_training_batches)


def _check_val_check_interval(trainer: Any, batches: float) -> None:
    """An int interval longer than the epoch would never validate (Lightning's error, in its words)."""
    interval = trainer.val_check_interval
    if (isinstance(interval, int) and interval > batches and trainer.check_val_every_n_epoch is not None
            and trainer.limit_val_batches > 0):
        raise ValueError(
            f"`val_check_interval` ({interval}) must be less than or equal to the number of the training batches "
            f"({batches}). If you want to disable validation set `limit_val_batches` to 0.0 instead. If you want "
            "to validate based on the total training batches, set `check_val_every_n_epoch=None`."
        )


def _warn_about_empty(trainer: Any, found: list[Any], stage: str) -> None:
    """A loader without batches runs nothing: Lightning's warning, with what to check. An empty list is no loaders
    at all, as in Lightning, and says nothing."""
    for loader in found:
        if not isinstance(loader, (list, tuple)) and sized_length(loader) == 0 and trainer.is_global_zero:
            warnings.warn(
                f"Total length of `{type(loader).__name__}` across ranks is zero. Please make sure this was your "
                f"intention: the {stage} loop runs no batch of it. Check the {stage} dataset and batch_size "
                f"(drop_last=True with fewer samples than one batch gives none), or pass no {stage} loader.",
                UserWarning, stacklevel=4,
            )


def set_up_evaluation_loaders(trainer: Any, fn: TrainerFn, model: Any, datamodule: Any, given: Any) -> None:
    """The loaders of validate, test or predict, with their batch limits."""
    loaders: Loaders = trainer.loaders
    hook, flag = _EVALUATION_SOURCES[fn]
    found = loaders_from(given, datamodule, model, hook)
    if found is None and getattr(trainer, flag) != 0:
        raise TypeError(
            f"An invalid dataloader was passed to `Trainer.{fn.value}(dataloaders=...)`. Found None. Either pass the "
            f"dataloader to the `.{fn.value}()` method OR implement `def {hook}(self):` in your "
            "LightningModule/LightningDataModule."
        )
    setattr(loaders, f"{_AS_GIVEN[fn]}_as_given", found)
    found = as_loader_list(found)
    _warn_about_empty(trainer, found, fn.value.replace("validate", "validation"))
    limits = [limited_batches(loader, getattr(trainer, flag), flag) for loader in found]
    if fn is TrainerFn.VALIDATING:
        loaders.val, loaders.num_val_batches = found, limits
    elif fn is TrainerFn.TESTING:
        loaders.test, loaders.num_test_batches = found, limits
    else:
        loaders.predict, loaders.num_predict_batches = found, limits


_AS_GIVEN = {TrainerFn.VALIDATING: "val", TrainerFn.TESTING: "test", TrainerFn.PREDICTING: "predict"}
_EVALUATION_SOURCES = {
    TrainerFn.VALIDATING: ("val_dataloader", "limit_val_batches"),
    TrainerFn.TESTING: ("test_dataloader", "limit_test_batches"),
    TrainerFn.PREDICTING: ("predict_dataloader", "limit_predict_batches"),
}
