"""Research code: LightningModules and DataModules. Imports torch, never the trainer."""

from research.datamodule import LightningDataModule
from research.hparams import AttributeDict, HyperparametersMixin
from research.module import LightningModule

__all__ = ["AttributeDict", "HyperparametersMixin", "LightningDataModule", "LightningModule"]
