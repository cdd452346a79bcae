"""Where a run is: the entry point it serves, the stage running now, and the progress a checkpoint stores.

One vocabulary, Lightning's: ``TrainerFn`` names the entry point (``fit``, ``validate``, ``test``, ``predict``),
``RunningStage`` the loop running inside it (``train``, ``sanity_check``, ``validate``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class TrainerFn(str, Enum):
    """The entry point a run serves; equal to its name as a string ("fit" == TrainerFn.FITTING)."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class RunningStage(str, Enum):
    """The loop running now."""

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def hook_prefix(self) -> str:
        """The word in this stage's hook names: ``on_validation_start``, ``validation_step``, ..."""
        return _HOOK_PREFIX[self]


_HOOK_PREFIX = {
    RunningStage.TRAINING: "train",
    RunningStage.SANITY_CHECKING: "validation",
    RunningStage.VALIDATING: "validation",
    RunningStage.TESTING: "test",
    RunningStage.PREDICTING: "predict",
}


class TrainerStatus(str, Enum):
    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


@dataclass
class TrainerState:
    """What ``trainer.state`` reads: status, entry point, and the stage running inside it."""

    status: TrainerStatus = TrainerStatus.INITIALIZING
    fn: TrainerFn | None = None
    stage: RunningStage | None = None
    validation_ended: float | None = None  # time.monotonic() when a validation last ended: a duration counts from it

    @property
    def finished(self) -> bool:
        return self.status is TrainerStatus.FINISHED

    @property
    def stopped(self) -> bool:
        return self.status is TrainerStatus.INTERRUPTED


@dataclass
class Progress:
    """Everything that says where a run is. A checkpoint stores it whole; resuming reads it back (all but
    the stop request, which belonged to the run that saved)."""

    epoch: int = 0
    global_step: int = 0                # optimizer steps taken
    batch_idx: int = 0                  # next batch to run within the epoch; exact resume starts here
    batches_that_stepped: int = 0       # the step number loggers see
    total_batch_idx: int = 0            # batches run over all epochs
    sampler_seed: int | None = None     # the training order of epoch e is fixed by (sampler_seed, e)
    should_stop: bool = False
    stop_reason: str = ""


@dataclass
class Loaders:
    """The data of the current run and how many batches of each loader it uses."""

    train: Any = None
    val: list[Any] = field(default_factory=list)
    test: list[Any] = field(default_factory=list)
    predict: list[Any] = field(default_factory=list)
    num_training_batches: float = float("inf")
    num_val_batches: list[float] = field(default_factory=list)
    num_sanity_val_batches: list[float] = field(default_factory=list)
    num_test_batches: list[float] = field(default_factory=list)
    num_predict_batches: list[float] = field(default_factory=list)
    val_check_batch: float | None = float("inf")  # None: a duration val_check_interval decides
    # The loaders as the user gave them (one, a list, a dict): what trainer.val_dataloaders & co. return.
    val_as_given: Any = None
    test_as_given: Any = None
    predict_as_given: Any = None
    # The random state the training epoch's iterator was created from: a checkpoint taken mid-epoch stores it,
    # and a resume recreates the same shuffled order from it.
    epoch_rng_states: dict[str, Any] | None = None
    # Several training loaders: how they are read together, the current epoch's passes over them (a checkpoint
    # taken mid-epoch stores their records), and the records a resumed run reopens them from.
    combined: Any = None
    train_streams: Any = None
    resumed_passes: list[dict[str, Any]] | None = None
    # reload_dataloaders_every_n_epochs: where fit's loaders came from (datamodule, train, val), the epoch each kind
    # was last asked for, and whether the validation loaders set up with fit have been read (by the sanity check).
    fit_sources: tuple[Any, Any, Any] = (None, None, None)
    train_loaded_epoch: float = 0
    val_loaded_epoch: float = float("-inf")
    val_read: bool = False


class LoaderAttribute:
    """A Trainer attribute read from the run's ``Loaders`` (``trainer.train_dataloader`` and the counts)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, trainer: Any, owner: type | None = None) -> Any:
        return self if trainer is None else getattr(trainer.loaders, self.name)
