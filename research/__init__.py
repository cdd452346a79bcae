"""Research code: LightningModules and DataModules. Imports torch, never the trainer."""

from research.datamodule import LightningDataModule
from research.hparams import AttributeDict
from research.module import LightningModule

__all__ = ["AttributeDict", "LightningDataModule", "LightningModule"]
