"""Loggers: metrics and hyperparameters to TensorBoard or CSV files, or to an experiment tracker (MLflow, W&B,
Comet, Neptune), whose library is imported only when its logger is used."""

from auxiliary.loggers.comet import CometLogger
from auxiliary.loggers.csv import CSVLogger
from auxiliary.loggers.mlflow import MLFlowLogger
from auxiliary.loggers.neptune import NeptuneLogger
from auxiliary.loggers.tensorboard import TensorBoardLogger
from auxiliary.loggers.wandb import WandbLogger

__all__ = ["CSVLogger", "CometLogger", "MLFlowLogger", "NeptuneLogger", "TensorBoardLogger", "WandbLogger"]
