"""Auxiliary: what training does not need to be correct. Every piece subscribes to the Trainer's events."""

from auxiliary.device_stats import DeviceStatsMonitor
from auxiliary.early_stopping import EarlyStopping, EarlyStoppingReason
from auxiliary.loggers import CSVLogger, CometLogger, MLFlowLogger, NeptuneLogger, TensorBoardLogger, WandbLogger
from auxiliary.lr_monitor import LearningRateMonitor
from auxiliary.model_summary import ModelSummary
from auxiliary.profilers import AdvancedProfiler, PyTorchProfiler, SimpleProfiler
from auxiliary.progress import ProgressBar, TQDMProgressBar
from auxiliary.trace import EventTrace

__all__ = [
    "AdvancedProfiler",
    "CSVLogger",
    "CometLogger",
    "DeviceStatsMonitor",
    "EarlyStopping",
    "EarlyStoppingReason",
    "EventTrace",
    "LearningRateMonitor",
    "MLFlowLogger",
    "ModelSummary",
    "NeptuneLogger",
    "ProgressBar",
    "PyTorchProfiler",
    "SimpleProfiler",
    "TQDMProgressBar",
    "TensorBoardLogger",
    "WandbLogger",
]
