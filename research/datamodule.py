"""LightningDataModule: the data side of an experiment, in one reusable object."""

from __future__ import annotations

import inspect
import weakref
from typing import Any

from torch.utils.data import DataLoader, Dataset, IterableDataset

from research.checkpoint_io import init_arguments, load_checkpoint
from research.hparams import HyperparametersMixin
from research.nested import apply_to_collection


class LightningDataModule(HyperparametersMixin):
    """Download once (``prepare_data``), build per process (``setup``), hand out loaders."""

    def __init__(self) -> None:
        self._trainer_ref: weakref.ref | None = None
        # Lightning's meaning: prepare_data runs on local rank 0 of every node when True,
        # on global rank 0 only when False.
        self.prepare_data_per_node: bool = True

    @property
    def trainer(self) -> Any:
        trainer = self._trainer_ref() if self._trainer_ref is not None else None
        if trainer is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a Trainer.")
        return trainer

    @trainer.setter
    def trainer(self, trainer: Any) -> None:
        self._trainer_ref = weakref.ref(trainer) if trainer is not None else None

    @classmethod
    def from_datasets(
        cls, train_dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None, predict_dataset: Any = None,
        batch_size: int = 1, num_workers: int = 0, **datamodule_kwargs: Any,
    ) -> LightningDataModule:
        """A datamodule whose loaders serve the given datasets (each may be a list or dict of datasets), as in
        Lightning: the training data shuffled (unless iterable), all with ``batch_size``, ``num_workers`` and pinned
        memory. ``batch_size`` and ``num_workers`` also go to ``__init__`` when it takes them."""

        def loaders(datasets: Any, shuffle: bool) -> Any:
            def loader(dataset: Dataset) -> DataLoader:
                return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and not isinstance(dataset, IterableDataset),
                                  num_workers=num_workers, pin_memory=True)

            return lambda: apply_to_collection(datasets, Dataset, loader)

        parameters = inspect.signature(cls.__init__).parameters
        takes_any = any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters.values())
        shared = {name: value for name, value in (("batch_size", batch_size), ("num_workers", num_workers))
                  if takes_any or name in parameters}
        datamodule = cls(**datamodule_kwargs, **shared)
        for name, datasets, shuffle in (("train", train_dataset, True), ("val", val_dataset, False),
                                        ("test", test_dataset, False), ("predict", predict_dataset, False)):
            if datasets is not None:
                setattr(datamodule, f"{name}_dataloader", loaders(datasets, shuffle))
        return datamodule

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, weights_only: bool = True, **overrides: Any) -> LightningDataModule:
        """Rebuild the datamodule from the checkpoint's ``datamodule_hyper_parameters`` (``overrides`` win) and
        put back its ``state_dict``."""
        checkpoint = load_checkpoint(checkpoint_path, "cpu", weights_only)
        datamodule = cls(**init_arguments(cls, checkpoint, "datamodule_hyper_parameters", overrides))
        if cls.__qualname__ in checkpoint:
            datamodule.load_state_dict(checkpoint[cls.__qualname__])
        return datamodule

    def prepare_data(self) -> None:
        """Download or convert data; the Trainer calls it once, on rank 0, before ``setup``."""

    def setup(self, stage: str) -> None:
        """Build datasets for ``stage`` ("fit", "validate", "test" or "predict"); runs on every rank."""

    def teardown(self, stage: str) -> None: ...

    def train_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no train_dataloader.")

    def val_dataloader(self) -> Any:
        return []

    def test_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no test_dataloader.")

    def predict_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no predict_dataloader.")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    def state_dict(self) -> dict[str, Any]:
        """What to save in checkpoints; override together with ``load_state_dict``."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_trainer_ref"] = None
        return state
