"""Tuner: ``Tuner(trainer).lr_find(model, ...)`` and ``Tuner(trainer).scale_batch_size(model, ...)``."""

from __future__ import annotations

from typing import Any

from auxiliary.batch_size_finder import METHODS, BatchSizeFinder, scale_batch_size
from auxiliary.lr_finder import LearningRateFinder, LRFinder, lr_find
from engineering import MisconfigurationError, Trainer
from research import LightningDataModule


class Tuner:
    """Finds a learning rate or a batch size for ``trainer`` before it trains. Each search runs short probe
    runs with the trainer's device and numerics, and leaves the model's weights, the random state and the
    trainer as they were; only the value found is written back (to the model's attribute or hparam, or the
    datamodule's)."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    def lr_find(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                dataloaders: Any = None, datamodule: LightningDataModule | None = None, method: str = "fit",
                min_lr: float = 1e-8, max_lr: float = 1.0, num_training: int = 100, mode: str = "exponential",
                early_stop_threshold: float | None = 4.0, update_attr: bool = True,
                attr_name: str = "") -> LRFinder | None:
        """The learning-rate range test (see ``auxiliary.lr_finder.lr_find``); ``.suggestion()`` and ``.plot()``
        on the result."""
        if method != "fit":
            raise MisconfigurationError(f"Tuner.lr_find(method={method!r}): the learning-rate finder trains, so "
                                        "method='fit' is the only one.")
        _check_arguments(train_dataloaders, val_dataloaders, dataloaders, method)
        self._refuse_configured(LearningRateFinder)
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        return lr_find(self._trainer, model, train_dataloaders, val_dataloaders, datamodule, min_lr=min_lr,
                       max_lr=max_lr, num_training=num_training, mode=mode,
                       early_stop_threshold=early_stop_threshold, update_attr=update_attr, attr_name=attr_name)

    def scale_batch_size(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                         dataloaders: Any = None, datamodule: LightningDataModule | None = None, method: str = "fit",
                         mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                         batch_arg_name: str = "batch_size", margin: float = 0.05,
                         max_val: int = 8192) -> int | None:
        """The largest batch size that runs (see ``auxiliary.batch_size_finder.scale_batch_size``)."""
        _check_arguments(train_dataloaders, val_dataloaders, dataloaders, method)
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        if train_dataloaders is not None or val_dataloaders is not None or dataloaders is not None:
            raise MisconfigurationError(
                "The batch-size finder rebuilds the dataloaders at each size, so it cannot use dataloaders passed "
                "in: return them from train_dataloader()/val_dataloader()/... of the model or a datamodule, "
                "reading the batch size from an attribute."
            )
        self._refuse_configured(BatchSizeFinder)
        return scale_batch_size(self._trainer, model, datamodule, method=method, mode=mode,
                                steps_per_trial=steps_per_trial, init_val=init_val, max_trials=max_trials,
                                batch_arg_name=batch_arg_name, margin=margin, max_val=max_val)

    def _refuse_configured(self, kind: type) -> None:
        if any(isinstance(callback, kind) for callback in self._trainer.callbacks):
            raise ValueError(f"The Trainer already has a {kind.__name__} callback: remove it to use the Tuner.")


def _check_arguments(train_dataloaders: Any, val_dataloaders: Any, dataloaders: Any, method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {list(METHODS)}.")
    if method == "fit" and dataloaders is not None:
        raise MisconfigurationError("With method='fit', pass train_dataloaders and val_dataloaders, not dataloaders.")
    if method != "fit" and (train_dataloaders is not None or val_dataloaders is not None):
        raise MisconfigurationError(f"With method={method!r}, pass dataloaders, not train_dataloaders/val_dataloaders.")
