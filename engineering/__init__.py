"""Engineering: the Trainer and everything that makes training run. Imports research, never auxiliary."""

from engineering.checkpoint import CheckpointError, Preempted
from engineering.data import ResumableSampler
from engineering.events import Callback
from engineering.loggers import Logger
from engineering.logging import MisconfigurationError
from engineering.loops import Progress
from engineering.model_checkpoint import ModelCheckpoint, OnExceptionCheckpoint
from engineering.optim import LightningOptimizer, LRSchedulerConfig
from engineering.profiler import PassThroughProfiler, Profiler
from engineering.seed import seed_everything
from engineering.trainer import Trainer

__all__ = [
    "Callback",
    "CheckpointError",
    "LRSchedulerConfig",
    "LightningOptimizer",
    "Logger",
    "MisconfigurationError",
    "ModelCheckpoint",
    "OnExceptionCheckpoint",
    "PassThroughProfiler",
    "Preempted",
    "Profiler",
    "Progress",
    "ResumableSampler",
    "Trainer",
    "seed_everything",
]
