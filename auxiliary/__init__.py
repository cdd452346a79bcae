"""Auxiliary: what training does not need to be correct. Every piece subscribes to the Trainer's events."""

from engineering import Callback
from auxiliary.loggers import CSVLogger, TensorBoardLogger
from auxiliary.model_summary import ModelSummary
from auxiliary.progress import ProgressBar, TQDMProgressBar

__all__ = ["CSVLogger", "Callback", "ModelSummary", "ProgressBar", "TQDMProgressBar", "TensorBoardLogger"]
