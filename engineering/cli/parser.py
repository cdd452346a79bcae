"""The argument parser: jsonargparse's, with the Lightning methods that add a Trainer, modules and optimizers."""

from __future__ import annotations

from typing import Any

import torch
from jsonargparse import ArgumentParser

from engineering.bus.callback import Callback
from engineering.trainer import Trainer
from research import LightningDataModule, LightningModule

# Lightning's Trainer flags that tribus's Trainer lacks, with Lightning's defaults: a config Lightning wrote names
# them all, so they are read, and refused only when they ask for something other than Lightning's default.
LIGHTNING_ONLY_TRAINER_FLAGS = {
    "plugins": None,
    "enable_autolog_hparams": True,
    "model_registry": None,
}


class ReduceLROnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch's ReduceLROnPlateau that also names the metric it follows, as ``--lr_scheduler`` needs.

    Args:
        monitor: the logged metric whose plateaus lower the learning rate, such as ``val_loss``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, monitor: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, *args, **kwargs)
        self.monitor = monitor


class LightningArgumentParser(ArgumentParser):
    """jsonargparse's ``ArgumentParser`` plus the methods Lightning's parser has for its classes.

    ``optimizers`` and ``lr_schedulers`` map each key added by ``add_optimizer_args`` /
    ``add_lr_scheduler_args`` to its class (or tuple of base classes) and ``link_to`` target.
    """

    def __init__(self, *args: Any, description: str = "tribus: train and evaluate a LightningModule",
                 env_prefix: str = "PL", default_env: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --trainer.max_epoch must be an error, not max_epochs
        super().__init__(*args, description=description, env_prefix=env_prefix, default_env=default_env, **kwargs)
        self.callback_keys: list[str] = []
        self.optimizers: dict[str, tuple[type | tuple[type, ...], str]] = {}
        self.lr_schedulers: dict[str, tuple[type | tuple[type, ...], str]] = {}

    def add_lightning_class_args(self, lightning_class: type, nested_key: str, subclass_mode: bool = False,
                                 required: bool = True) -> list[str]:
        """Add the ``__init__`` arguments of a Trainer, LightningModule, LightningDataModule or Callback class
        under ``nested_key``; with ``subclass_mode`` any subclass is chosen by ``class_path``."""
        lightning_bases = (Trainer, LightningModule, LightningDataModule, Callback)
        if not (isinstance(lightning_class, type) and issubclass(lightning_class, lightning_bases)):
            raise ValueError(f"cannot add arguments from {lightning_class!r}: pass a subclass of Trainer, "
                             "LightningModule, LightningDataModule or Callback")
        if issubclass(lightning_class, Callback):
            self.callback_keys.append(nested_key)
        if subclass_mode:
            return self.add_subclass_arguments(lightning_class, nested_key, fail_untyped=False, required=required)
        added = self.add_class_arguments(lightning_class, nested_key, fail_untyped=False, sub_configs=True,
                                         instantiate=not issubclass(lightning_class, Trainer))
        if issubclass(lightning_class, Trainer):
            added += self._add_lightning_only_trainer_flags(nested_key)
        return added

    def _add_lightning_only_trainer_flags(self, nested_key: str) -> list[str]:
        added = []
        for name, default in LIGHTNING_ONLY_TRAINER_FLAGS.items():
            self.add_argument(
                f"--{nested_key}.{name}", type=Any, default=default,
                help=f"Lightning's flag, which tribus's Trainer does not have: only its default, "
                     f"{default!r}, is accepted, so that configs written by Lightning load",
            )
            added.append(f"{nested_key}.{name}")
        return added

    def add_optimizer_args(self, optimizer_class: type | tuple[type, ...] = (torch.optim.Optimizer,),
                           nested_key: str = "optimizer", link_to: str = "AUTOMATIC") -> None:
        """Add an optimizer's arguments, all but ``params``, under ``nested_key``; a tuple allows its subclasses.

        ``link_to="AUTOMATIC"`` lets LightningCLI build ``configure_optimizers`` from it; a key such as
        ``model.init_args.optimizer`` passes the class path and arguments to that argument instead.
        """
        self._add_optimization_class(optimizer_class, torch.optim.Optimizer, nested_key, skip={"params"})
        self.optimizers[nested_key] = (optimizer_class, link_to)

    def add_lr_scheduler_args(
        self,
        lr_scheduler_class: type | tuple[type, ...] = (torch.optim.lr_scheduler.LRScheduler,),
        nested_key: str = "lr_scheduler", link_to: str = "AUTOMATIC",
    ) -> None:
        """Add a learning-rate scheduler's arguments, all but ``optimizer``, under ``nested_key``."""
        self._add_optimization_class(lr_scheduler_class, torch.optim.lr_scheduler.LRScheduler, nested_key,
                                     skip={"optimizer"})
        self.lr_schedulers[nested_key] = (lr_scheduler_class, link_to)

    def _add_optimization_class(self, chosen: type | tuple[type, ...], base: type, nested_key: str,
                                skip: set[str]) -> None:
        classes = chosen if isinstance(chosen, tuple) else (chosen,)
        if not all(isinstance(cls, type) and issubclass(cls, base) for cls in classes):
            raise ValueError(f"{nested_key}: {chosen!r} must be a {base.__qualname__} subclass or a tuple of them")
        options = {"instantiate": False, "fail_untyped": False, "skip": skip}
        if isinstance(chosen, tuple):
            self.add_subclass_arguments(chosen, nested_key, **options)
        else:
            self.add_class_arguments(chosen, nested_key, sub_configs=True, **options)
