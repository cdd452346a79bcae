"""Loggers: metrics and hyperparameters to TensorBoard or CSV files."""

from auxiliary.loggers.csv import CSVLogger
from auxiliary.loggers.tensorboard import TensorBoardLogger

__all__ = ["CSVLogger", "TensorBoardLogger"]
