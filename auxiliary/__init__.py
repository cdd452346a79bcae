"""Auxiliary: what training does not need to be correct. Every piece subscribes to the Trainer's events.

Each name loads its module on first use: ``from auxiliary import EarlyStopping`` imports early stopping alone,
so a run (and the Trainer's defaults) pays only for the pieces it uses.
"""

from typing import TYPE_CHECKING

_LAZY = {
    "AdvancedProfiler": "auxiliary.profilers",
    "BackboneFinetuning": "auxiliary.finetuning",
    "BaseFinetuning": "auxiliary.finetuning",
    "BasePredictionWriter": "auxiliary.prediction_writer",
    "BatchSizeFinder": "auxiliary.batch_size_finder",
    "CSVLogger": "auxiliary.loggers.csv",
    "Checkpoint": "auxiliary.checkpoint",
    "CometLogger": "auxiliary.loggers.comet",
    "DeviceStatsMonitor": "auxiliary.device_stats",
    "EMAWeightAveraging": "auxiliary.weight_averaging",
    "EarlyStopping": "auxiliary.early_stopping",
    "EarlyStoppingReason": "auxiliary.early_stopping",
    "EventTrace": "auxiliary.trace",
    "GradientAccumulationScheduler": "auxiliary.gradient_accumulation",
    "LRFinder": "auxiliary.lr_finder",
    "LambdaCallback": "auxiliary.lambda_callback",
    "LearningRateFinder": "auxiliary.lr_finder",
    "LearningRateMonitor": "auxiliary.lr_monitor",
    "MLFlowLogger": "auxiliary.loggers.mlflow",
    "ModelPruning": "auxiliary.pruning",
    "ModelSummary": "auxiliary.model_summary",
    "NeptuneLogger": "auxiliary.loggers.neptune",
    "ProgressBar": "auxiliary.progress",
    "PyTorchProfiler": "auxiliary.profilers",
    "RichModelSummary": "auxiliary.rich_output",
    "RichProgressBar": "auxiliary.rich_output",
    "RichProgressBarTheme": "auxiliary.rich_output",
    "SimpleProfiler": "auxiliary.profilers",
    "SpikeDetection": "auxiliary.spike",
    "StochasticWeightAveraging": "auxiliary.stochastic_weight_averaging",
    "TQDMProgressBar": "auxiliary.progress",
    "TensorBoardLogger": "auxiliary.loggers.tensorboard",
    "ThroughputMonitor": "auxiliary.throughput",
    "Timer": "auxiliary.timer",
    "TrainingSpikeException": "auxiliary.spike",
    "Tuner": "auxiliary.tuner",
    "WandbLogger": "auxiliary.loggers.wandb",
    "WeightAveraging": "auxiliary.weight_averaging",
}

if TYPE_CHECKING:  # what the names are, for type checkers and the API reference (which reads, never runs)
    from auxiliary.batch_size_finder import BatchSizeFinder
    from auxiliary.checkpoint import Checkpoint
    from auxiliary.device_stats import DeviceStatsMonitor
    from auxiliary.finetuning import BackboneFinetuning, BaseFinetuning
    from auxiliary.gradient_accumulation import GradientAccumulationScheduler
    from auxiliary.early_stopping import EarlyStopping, EarlyStoppingReason
    from auxiliary.lambda_callback import LambdaCallback
    from auxiliary.loggers import CSVLogger, CometLogger, MLFlowLogger, NeptuneLogger, TensorBoardLogger, WandbLogger
    from auxiliary.lr_finder import LearningRateFinder, LRFinder
    from auxiliary.lr_monitor import LearningRateMonitor
    from auxiliary.model_summary import ModelSummary
    from auxiliary.prediction_writer import BasePredictionWriter
    from auxiliary.pruning import ModelPruning
    from auxiliary.profilers import AdvancedProfiler, PyTorchProfiler, SimpleProfiler
    from auxiliary.progress import ProgressBar, TQDMProgressBar
    from auxiliary.rich_output import RichModelSummary, RichProgressBar, RichProgressBarTheme
    from auxiliary.spike import SpikeDetection, TrainingSpikeException
    from auxiliary.stochastic_weight_averaging import StochasticWeightAveraging
    from auxiliary.throughput import ThroughputMonitor
    from auxiliary.timer import Timer
    from auxiliary.trace import EventTrace
    from auxiliary.tuner import Tuner
    from auxiliary.weight_averaging import EMAWeightAveraging, WeightAveraging


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # found directly next time
        return value
    raise AttributeError(f"module 'auxiliary' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AdvancedProfiler",
    "BackboneFinetuning",
    "BaseFinetuning",
    "BasePredictionWriter",
    "BatchSizeFinder",
    "CSVLogger",
    "Checkpoint",
    "CometLogger",
    "DeviceStatsMonitor",
    "EMAWeightAveraging",
    "EarlyStopping",
    "EarlyStoppingReason",
    "EventTrace",
    "GradientAccumulationScheduler",
    "LRFinder",
    "LambdaCallback",
    "LearningRateFinder",
    "LearningRateMonitor",
    "MLFlowLogger",
    "ModelPruning",
    "ModelSummary",
    "NeptuneLogger",
    "ProgressBar",
    "PyTorchProfiler",
    "RichModelSummary",
    "RichProgressBar",
    "RichProgressBarTheme",
    "SimpleProfiler",
    "SpikeDetection",
    "StochasticWeightAveraging",
    "TQDMProgressBar",
    "TensorBoardLogger",
    "ThroughputMonitor",
    "Timer",
    "TrainingSpikeException",
    "Tuner",
    "WandbLogger",
    "WeightAveraging",
]
