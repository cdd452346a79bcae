"""Engineering: the Trainer and everything that makes training run. Imports research, never auxiliary."""

from typing import TYPE_CHECKING

from engineering.accelerators import Accelerator, CPUAccelerator, CUDAAccelerator, MPSAccelerator, XLAAccelerator
from engineering.bus.callback import Callback
from engineering.bus.event import ignores
from engineering.checkpointing.checkpoint import Preempted
from engineering.checkpointing.model_checkpoint import ModelCheckpoint
from engineering.checkpointing.on_exception import OnExceptionCheckpoint
from engineering.data.batches import ResumableSampler
from engineering.errors import CheckpointError, MisconfigurationError
from engineering.loggers import Logger
from engineering.loop.state import Progress, RunningStage, TrainerFn, TrainerState, TrainerStatus
from engineering.optimization.optimizers import LightningOptimizer, LRSchedulerConfig
from engineering.profiler import PassThroughProfiler, Profiler
from engineering.progress_bar import ProgressBar
from engineering.seed import seed_everything
from engineering.strategies import ParallelStrategy, SingleDeviceStrategy, Strategy
from engineering.utilities import cli_lightning_logo
from engineering.trainer import Trainer
from engineering.view import TrainerView

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
    "Accelerator",
    "CPUAccelerator",
    "CUDAAccelerator",
    "Callback",
    "CheckpointError",
    "DDPStrategy",
    "FSDPStrategy",
    "LRSchedulerConfig",
    "LightningOptimizer",
    "Logger",
    "MPSAccelerator",
    "MisconfigurationError",
    "ModelCheckpoint",
    "OnExceptionCheckpoint",
    "ParallelStrategy",
    "PassThroughProfiler",
    "Preempted",
    "Profiler",
    "Progress",
    "ProgressBar",
    "ResumableSampler",
    "RunningStage",
    "SingleDeviceStrategy",
    "Strategy",
    "Trainer",
    "TrainerFn",
    "TrainerState",
    "TrainerStatus",
    "TrainerView",
    "XLAAccelerator",
    "XLAStrategy",
    "cli_lightning_logo",
    "ignores",
    "seed_everything",
]
