"""Auxiliary: what training does not need to be correct. Every piece subscribes to the Trainer's events."""

from engineering import Callback
from auxiliary.device_stats import DeviceStatsMonitor
from auxiliary.finetuning import BackboneFinetuning, BaseFinetuning
from auxiliary.gradient_accumulation import GradientAccumulationScheduler
from auxiliary.early_stopping import EarlyStopping, EarlyStoppingReason
from auxiliary.loggers import CSVLogger, TensorBoardLogger
from auxiliary.lr_monitor import LearningRateMonitor
from auxiliary.model_summary import ModelSummary
from auxiliary.profilers import AdvancedProfiler, PyTorchProfiler, SimpleProfiler
from auxiliary.progress import ProgressBar, TQDMProgressBar
from auxiliary.stochastic_weight_averaging import StochasticWeightAveraging
from auxiliary.trace import EventTrace
from auxiliary.weight_averaging import EMAWeightAveraging, WeightAveraging

__all__ = [
    "AdvancedProfiler",
    "BackboneFinetuning",
    "BaseFinetuning",
    "CSVLogger",
    "Callback",
    "DeviceStatsMonitor",
    "EMAWeightAveraging",
    "EarlyStopping",
    "EarlyStoppingReason",
    "EventTrace",
    "GradientAccumulationScheduler",
    "LearningRateMonitor",
    "ModelSummary",
    "ProgressBar",
    "PyTorchProfiler",
    "SimpleProfiler",
    "StochasticWeightAveraging",
    "TQDMProgressBar",
    "TensorBoardLogger",
    "WeightAveraging",
]
