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
    """The data side of an experiment: download once (``prepare_data``), build per process (``setup``),
    hand out loaders (``train_dataloader``, ...). Pass it as ``trainer.fit(model, datamodule=data)``.

    Example:
        ```python
        class RandomImages(LightningDataModule):
            def __init__(self, batch_size: int = 32):
                super().__init__()
                self.save_hyperparameters()

            def setup(self, stage):
                self.train = TensorDataset(torch.randn(512, 1, 28, 28), torch.randint(0, 10, (512,)))

            def train_dataloader(self):
                return DataLoader(self.train, batch_size=self.hparams.batch_size, shuffle=True)
        ```
    """

    # Where a checkpoint keeps the datamodule's hyperparameters, under Lightning's keys.
    CHECKPOINT_HYPER_PARAMS_KEY = "datamodule_hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "datamodule_hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "datamodule_hparams_type"

    def __init__(self) -> None:
        self._trainer_ref: weakref.ref | None = None
        self.prepare_data_per_node: bool = True
        """``prepare_data`` runs on local rank 0 of every node; ``False``: on global rank 0 only."""

    @property
    def trainer(self) -> Any:
        """The Trainer using this datamodule; a weak reference, as for the module.

        Raises:
            RuntimeError: No Trainer holds it.
        """
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
        put back its ``state_dict``.

        Args:
            checkpoint_path: A path or file-like object.
            weights_only: Refuse to unpickle anything but tensors and plain containers; ``False`` only for
                files you trust.
            **overrides: ``__init__`` arguments that replace the saved ones.

        Returns:
            The datamodule.
        """
        checkpoint = load_checkpoint(checkpoint_path, "cpu", weights_only)
        datamodule = cls(**init_arguments(cls, checkpoint, overrides))
        if cls.__qualname__ in checkpoint:
            datamodule.load_state_dict(checkpoint[cls.__qualname__])
        return datamodule

    def prepare_data(self) -> None:
        """Download or convert data; the Trainer calls it once per node (or on global rank 0 with
        ``prepare_data_per_node = False``), before ``setup``. State set here is not seen by other processes."""

    def setup(self, stage: str) -> None:
        """Build the datasets for ``stage``, on every process.

        Args:
            stage: ``"fit"``, ``"validate"``, ``"test"`` or ``"predict"``.
        """

    def teardown(self, stage: str) -> None:
        """Release what ``setup`` built, at the end of the stage (after an error too)."""

    def train_dataloader(self) -> Any:
        """The training loader (or several, in a list or dict), for ``fit``.

        Raises:
            NotImplementedError: Not defined, and ``fit`` needs it.
        """
        raise NotImplementedError(f"{type(self).__name__} defines no train_dataloader.")

    def val_dataloader(self) -> Any:
        """The validation loader or loaders; none by default, so ``fit`` then skips validation."""
        return []

    def test_dataloader(self) -> Any:
        """The test loader or loaders, for ``trainer.test``.

        Raises:
            NotImplementedError: Not defined, and ``test`` needs it.
        """
        raise NotImplementedError(f"{type(self).__name__} defines no test_dataloader.")

    def predict_dataloader(self) -> Any:
        """The loader or loaders for ``trainer.predict``.

        Raises:
            NotImplementedError: Not defined, and ``predict`` needs it.
        """
        raise NotImplementedError(f"{type(self).__name__} defines no predict_dataloader.")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change a batch on the CPU before it moves to the device; defined here, it replaces the module's hook."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change a batch on the device; defined here, it replaces the module's hook."""
        return batch

    def state_dict(self) -> dict[str, Any]:
        """What to save in checkpoints; override together with ``load_state_dict``."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Put back what ``state_dict`` returned, when training resumes from a checkpoint."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """While a checkpoint is built: add to or change ``checkpoint`` in place."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """When a checkpoint was read to resume training: restore what ``on_save_checkpoint`` added."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_trainer_ref"] = None
        return state
