"""Auxiliary: what training does not need to be correct. Every piece subscribes to the Trainer's events."""

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
