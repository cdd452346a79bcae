"""BasePredictionWriter: write predictions as they are made, per batch and/or once per prediction epoch."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import DataLoader, RandomSampler

from engineering import Callback, MisconfigurationError

WRITE_INTERVALS = ("batch", "epoch", "batch_and_epoch")


class BasePredictionWriter(Callback):
    """Subclass it and define ``write_on_batch_end`` (called at each ``on_predict_batch_end`` for
    ``write_interval`` "batch" or "batch_and_epoch") and/or ``write_on_epoch_end`` (at ``on_predict_epoch_end``
    for "epoch" or "batch_and_epoch", with every prediction of the pass).

    ``batch_indices`` are the dataset indices of each batch, read from the dataloader's batch sampler (None for
    data that has none). Under DDP every process calls the writer with its own predictions: name files by
    ``trainer.global_rank``.
    """

    def __init__(self, write_interval: str = "batch") -> None:
        if write_interval not in WRITE_INTERVALS:
            raise MisconfigurationError(
                f"BasePredictionWriter(write_interval={write_interval!r}): use one of {list(WRITE_INTERVALS)}."
            )
        self.interval = write_interval
        self._on_batch = write_interval in ("batch", "batch_and_epoch")
        self._on_epoch = write_interval in ("epoch", "batch_and_epoch")
        self._index_iterators: dict[int, Iterator[list[int]] | None] = {}
        self._predictions: dict[int, list[Any]] = {}
        self._batch_indices: dict[int, list[list[int] | None]] = {}

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Sequence[int] | None,
                           batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        """Write one batch's ``prediction``."""
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.interval!r}) must define "
                                  "write_on_batch_end(trainer, pl_module, prediction, batch_indices, batch, "
                                  "batch_idx, dataloader_idx).")

    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        """Write every prediction of the pass: ``predictions`` is a list of batch outputs (a list of such
        lists with several dataloaders); ``batch_indices`` is one list of batch indices per dataloader."""
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.interval!r}) must define "
                                  "write_on_epoch_end(trainer, pl_module, predictions, batch_indices).")

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._index_iterators = {index: _batch_index_iterator(loader)
                                 for index, loader in enumerate(_one_per_dataloader(trainer.predict_dataloaders))}
        self._predictions = {index: [] for index in self._index_iterators}
        self._batch_indices = {index: [] for index in self._index_iterators}

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        indices = self._index_iterators.get(dataloader_idx)
        batch_indices = next(indices, None) if indices is not None else None
        if self._on_epoch:
            self._predictions[dataloader_idx].append(outputs)
            self._batch_indices[dataloader_idx].append(batch_indices)
        if self._on_batch:
            self.write_on_batch_end(trainer, pl_module, outputs, batch_indices, batch, batch_idx, dataloader_idx)

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._on_epoch:
            predictions = [self._predictions[index] for index in sorted(self._predictions)]
            indices = [self._batch_indices[index] for index in sorted(self._batch_indices)]
            self.write_on_epoch_end(trainer, pl_module, predictions[0] if len(predictions) == 1 else predictions,
                                    indices)
        self._predictions, self._batch_indices, self._index_iterators = {}, {}, {}


def _one_per_dataloader(given: Any) -> list[Any]:
    """``trainer.predict_dataloaders`` is what the user gave, one loader or a list of them, as in Lightning."""
    return list(given) if isinstance(given, (list, tuple)) else [given]


def _batch_index_iterator(loader: Any) -> Iterator[list[int]] | None:
    """The dataset indices of each batch ``loader`` yields, from a second pass over its batch sampler (which
    reads no data). A shuffling sampler would give another order on that pass: then there are none."""
    batch_sampler = getattr(loader, "batch_sampler", None) if isinstance(loader, DataLoader) else None
    if batch_sampler is None:
        return None
    if isinstance(loader.sampler, RandomSampler):
        warnings.warn(
            "BasePredictionWriter: the prediction dataloader shuffles, so the indices of its batches cannot be "
            "known and batch_indices is None. Build it with shuffle=False.", RuntimeWarning, stacklevel=2,
        )
        return None
    return (list(indices) for indices in batch_sampler)
