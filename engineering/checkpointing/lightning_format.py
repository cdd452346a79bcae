"""Where a run is, in Lightning's words: the ``loops`` and ``pytorch-lightning_version`` of a checkpoint.

tribus keeps its place in ``progress`` (``loop/state.py``). So that Lightning 2.6.6 can resume from a tribus
checkpoint, ``lightning_keys`` writes the same place as Lightning's loop progress counters; so that tribus can
resume from a Lightning checkpoint, ``progress_from_lightning`` reads them back.
"""

from __future__ import annotations

import math
from typing import Any

# The Lightning release whose checkpoint layout tribus writes; Lightning upgrades older layouts, not this one.
LIGHTNING_FORMAT_VERSION = "2.6.6"


def lightning_keys(progress: Any, automatic: bool, accumulate_grad_batches: int,
                   batches_per_epoch: float) -> dict[str, Any]:
    """``pytorch-lightning_version`` and ``loops`` for a checkpoint taken at ``progress``."""
    between_epochs = progress.batch_idx == 0
    started_epochs = progress.epoch if between_epochs else progress.epoch + 1
    this_epoch = progress.batch_idx
    steps_this_epoch = math.ceil(this_epoch / accumulate_grad_batches) if automatic else 0
    batches = _counts(progress.total_batch_idx, this_epoch, processed=True)
    batches_that_stepped = progress.batches_that_stepped
    if not between_epochs:
        # Lightning writes a mid-epoch checkpoint from on_train_batch_end, before it counts the batch completed
        # and stepped for the loggers; its restart finishes that bookkeeping. Say the same, so it continues alike.
        for count in (batches["total"], batches["current"]):
            count["completed"] -= 1
        batches_that_stepped -= 1
    optimizer_steps = _counts(progress.global_step, steps_this_epoch)
    idle = _counts(0, 0)
    fit_loop = {
        "state_dict": {},
        "epoch_loop.state_dict": {"_batches_that_stepped": batches_that_stepped},
        "epoch_loop.batch_progress": {**batches, "is_last_batch": not between_epochs and this_epoch >= batches_per_epoch},
        "epoch_loop.scheduler_progress": idle,
        "epoch_loop.automatic_optimization.state_dict": {},
        "epoch_loop.automatic_optimization.optim_progress": {"optimizer": {
            "step": optimizer_steps if automatic else idle,
            "zero_grad": _counts(progress.global_step, steps_this_epoch, started=True) if automatic else idle,
        }},
        "epoch_loop.manual_optimization.state_dict": {},
        "epoch_loop.manual_optimization.optim_step_progress": idle if automatic else optimizer_steps,
        "epoch_loop.val_loop.state_dict": {},
        "epoch_loop.val_loop.batch_progress": {**_counts(0, 0, processed=True), "is_last_batch": False},
        "epoch_progress": {
            "total": {"ready": started_epochs, "started": started_epochs, "processed": progress.epoch,
                      "completed": progress.epoch},
            "current": {"ready": started_epochs, "started": started_epochs, "processed": progress.epoch,
                        "completed": progress.epoch},
        },
    }
    return {
        "pytorch-lightning_version": LIGHTNING_FORMAT_VERSION,
        "loops": {"fit_loop": fit_loop, "validate_loop": {}, "test_loop": {}, "predict_loop": {}},
    }


def _counts(total: int, current: int, started: bool = False, processed: bool = False) -> dict[str, dict[str, int]]:
    """Lightning's progress counters, with every stage of each count at the same value (a complete point)."""
    stages = ["ready", "completed"] + (["started"] if started or processed else []) + (["processed"] if processed else [])
    return {"total": dict.fromkeys(stages, total), "current": dict.fromkeys(stages, current)}


def progress_from_lightning(progress: Any, checkpoint: dict[str, Any]) -> None:
    """Set ``progress`` from a Lightning checkpoint's ``loops``; without them, assume it ended an epoch."""
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
    batches = fit_loop.get("epoch_loop.batch_progress", {})
    epoch = checkpoint.get("epoch", 0)
    progress.global_step = checkpoint.get("global_step", 0)
    progress.batches_that_stepped = fit_loop.get("epoch_loop.state_dict", {}).get(
        "_batches_that_stepped", progress.global_step
    )
    progress.total_batch_idx = batches.get("total", {}).get("processed", 0)
    current = batches.get("current", {}).get("processed", 0)
    if batches and not batches.get("is_last_batch", True) and current:
        progress.epoch, progress.batch_idx = epoch, current
    else:
        progress.epoch, progress.batch_idx = epoch + 1, 0
