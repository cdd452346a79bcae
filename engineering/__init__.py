"""Engineering: the Trainer and everything that makes training run. Imports research, never auxiliary."""

from engineering.checkpoint import ModelCheckpoint
from engineering.events import Callback
from engineering.loggers import Logger
from engineering.logging import MisconfigurationError
from engineering.loops import Progress
from engineering.optim import LightningOptimizer, LRSchedulerConfig
from engineering.profiler import PassThroughProfiler, Profiler
from engineering.seed import seed_everything
from engineering.trainer import Trainer

__all__ = [
    "Callback",
    "LRSchedulerConfig",
    "LightningOptimizer",
    "Logger",
    "MisconfigurationError",
    "ModelCheckpoint",
    "PassThroughProfiler",
    "Profiler",
    "Progress",
    "Trainer",
    "seed_everything",
]
