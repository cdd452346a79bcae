"""Engineering: the Trainer and everything that makes training run. Imports research, never auxiliary."""

from typing import TYPE_CHECKING

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
from engineering.strategies import SingleDeviceStrategy
from engineering.trainer import Trainer

# Strategies that import torch.distributed or torch_xla load on first use, not with the package.
_LAZY = {
    "DDPStrategy": "engineering.strategies.ddp",
    "FSDPStrategy": "engineering.strategies.fsdp",
    "XLAStrategy": "engineering.strategies.xla",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and the API reference (which reads, never runs)
    from engineering.strategies.ddp import DDPStrategy
    from engineering.strategies.fsdp import FSDPStrategy
    from engineering.strategies.xla import XLAStrategy


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engineering' has no attribute {name!r}")


__all__ = [
    "Callback",
    "CheckpointError",
    "DDPStrategy",
    "FSDPStrategy",
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
    "SingleDeviceStrategy",
    "Trainer",
    "XLAStrategy",
    "seed_everything",
]
