"""Which loaders a run reads and how many batches of each: given loaders, else the datamodule's, else the module's.

Each function fills the run's ``Loaders`` (``loop/state.py``); the Trainer reads them through its properties.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from engineering.bus.callback import defines
from engineering.config import val_check_batch
from engineering.data.batches import (
    as_loader_list, limited_batches, sized_length, with_resumable_sampler, without_shuffle,
)
from engineering.data.combined import CombinedBatches, CombinedLoader, combined_length, flatten
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
    """The training loader (with a resumable sampler where the Trainer may replace it) and the validation loaders;
    where they came from is kept, for reload_dataloaders_every_n_epochs."""
    trainer.loaders.fit_sources = (datamodule, train, val)
    _set_up_train_loader(trainer, model, datamodule, train)
    _set_up_val_loaders(trainer, model, datamodule, val)


def reload_train_loader_if_due(trainer: Any) -> None:
    """At an epoch's start: the training loaders asked for again, once reload_dataloaders_every_n_epochs epochs
    have passed since they were (counting from the epoch the run started or resumed in, as Lightning does)."""
    loaders, every, epoch = trainer.loaders, trainer.reload_dataloaders_every_n_epochs, trainer.progress.epoch
    if every and epoch - loaders.train_loaded_epoch >= every:
        datamodule, train, _ = loaders.fit_sources
        _set_up_train_loader(trainer, trainer.lightning_module, datamodule, train)
        loaders.train_loaded_epoch = epoch


def reload_val_loaders_if_due(trainer: Any) -> None:
    """Before a validation in fit: the validation loaders asked for again when reload_dataloaders_every_n_epochs
    epochs have passed since they were. Those set up with fit count from their first validation; those the sanity
    check already read, from then (when the first epoch validates) or from never."""
    loaders, every, epoch = trainer.loaders, trainer.reload_dataloaders_every_n_epochs, trainer.progress.epoch
    if not every or epoch - loaders.val_loaded_epoch < every:
        return
    if loaders.val_read:
        datamodule, _, val = loaders.fit_sources
        _set_up_val_loaders(trainer, trainer.lightning_module, datamodule, val)
    loaders.val_loaded_epoch, loaders.val_read = epoch, True


def _set_up_train_loader(trainer: Any, model: Any, datamodule: Any, train: Any) -> None:
    loaders: Loaders = trainer.loaders
    train = loaders_from(train, datamodule, model, "train_dataloader")
    if train is None:
        raise MisconfigurationError(
            "fit needs training data: pass train_dataloaders, a datamodule, or define train_dataloader()."
        )
    combined = loaders.combined = combined_training_loader(train)
    sources = combined.flattened if combined is not None else [train]
    prepared = [_prepared_for_training(trainer, loader) for loader in sources]
    if combined is None:
        loaders.train = prepared[0]
        loaders.num_training_batches = limited_batches(prepared[0], trainer.limit_train_batches, "limit_train_batches")
    else:
        combined.flattened = prepared
        combined.limits = [limited_batches(d, trainer.limit_train_batches, "limit_train_batches") for d in prepared]
        loaders.train = combined.iterables
        loaders.num_training_batches = combined_length(combined)
    if loaders.num_training_batches == 0 and trainer.limit_train_batches != 0:
        raise MisconfigurationError(
            "The training dataloader is empty: it yielded no batches. Check the dataset and batch_size "
            "(drop_last=True with fewer samples than one batch gives none)."
        )
    loaders.val_check_batch = val_check_batch(trainer.val_check_interval, loaders.num_training_batches)
    _check_val_check_interval(trainer, loaders.num_training_batches)


def _set_up_val_loaders(trainer: Any, model: Any, datamodule: Any, val: Any) -> None:
    loaders: Loaders = trainer.loaders
    loaders.val_as_given = loaders_from(val, datamodule, model, "val_dataloader")
    loaders.val = evaluation_loader_list(loaders.val_as_given, "fit")
    _warn_about_empty(trainer, loaders.val, "validation")
    loaders.num_val_batches = [limited_batches(d, trainer.limit_val_batches, "limit_val_batches") for d in loaders.val]
    sanity = math.inf if trainer.num_sanity_val_steps == -1 else trainer.num_sanity_val_steps
    loaders.num_sanity_val_batches = [min(sanity, count) for count in loaders.num_val_batches]


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


def combined_training_loader(train: Any) -> CombinedLoader | None:
    """How a training source is read: a CombinedLoader as given; a dict, list or tuple of loaders (nested as you
    like) as ``CombinedLoader(train, "max_size_cycle")``, as Lightning does; None for one loader (or a list of
    batches, read as one iterable)."""
    if isinstance(train, CombinedLoader):
        return train
    if not isinstance(train, (dict, list, tuple)):
        return None
    leaves, _ = flatten(train)
    if not leaves or not all(_reads_batches(leaf) for leaf in leaves):
        return None
    return CombinedLoader(train, "max_size_cycle")


def evaluation_loader_list(source: Any, entry_point: str) -> list[Any]:
    """The loaders an evaluation reads one after the other (``dataloader_idx`` in order): a dict, list or nested
    collection of loaders is flattened, as Lightning's sequential CombinedLoader does. A CombinedLoader in another
    mode is one loader of combined batches (not for predict, as in Lightning)."""
    if isinstance(source, CombinedLoader):
        if source.mode == "sequential":
            return list(source.flattened)
        if entry_point == "predict":
            raise ValueError('`trainer.predict()` only supports the `CombinedLoader(mode="sequential")` mode.')
        return [CombinedBatches(source)]
    if isinstance(source, (dict, list, tuple)):
        leaves, _ = flatten(source)
        if leaves and all(_reads_batches(leaf) for leaf in leaves):
            return leaves
    return as_loader_list(source)


def _reads_batches(candidate: Any) -> bool:
    return isinstance(candidate, Iterable) and not isinstance(candidate, (list, tuple, dict, str, bytes, torch.Tensor))


def _prepared_for_training(trainer: Any, loader: Any) -> Any:
    if trainer.overfit_batches:
        loader = without_shuffle(loader)
    if trainer.use_distributed_sampler and trainer.world_size > 1:  # as Lightning: only across processes
        loader = with_resumable_sampler(loader, trainer.world_size, trainer.global_rank)
    return loader


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
    found = evaluation_loader_list(found, fn.value)
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
