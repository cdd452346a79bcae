"""Which file ``ckpt_path`` means, and which preemption checkpoints belong to this run.

Preemption checkpoints (``hpc_ckpt_<n>.ckpt``) sit in ``default_root_dir``, where Lightning puts them, so
several experiments sharing that directory share them too. Each records the run it was written for (its log
directory, and its SLURM job when there is one); ``"last"`` and the automatic resume under SLURM take only
those of this run, and say which they leave out and why.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from engineering.checkpointing.on_exception import OnExceptionCheckpoint
from engineering.errors import MisconfigurationError
from engineering.strategies.environment import under_slurm

HPC_NAME = re.compile(r"^hpc_ckpt_(\d+)\.ckpt$")
RUN_KEY = "preempted_run"  # the key of a preemption checkpoint that names its run


def resolve_checkpoint_path(trainer: Any, ckpt_path: Any, stage: str) -> Path | None:
    """A path, or "best", "last" (the newest last/on-exception checkpoint on disk, or this run's preemption
    checkpoint), "hpc"; None starts fresh, except that fit under SLURM resumes from the checkpoint a preemption
    of this job left, as Lightning does."""
    if ckpt_path is None:
        if stage == "fit" and under_slurm():
            found = _latest(own_hpc_checkpoints(trainer, "the automatic resume under SLURM"))
            if found is not None:
                print(f"Resuming from {found}, saved when SLURM preempted this job.")
            return found
        return None
    if ckpt_path == "best":
        callback = trainer.checkpoint_callback
        if callback is None or not callback.best_model_path:
            raise MisconfigurationError(
                'ckpt_path="best" but no checkpoint was saved by this Trainer yet. '
                "Pass the checkpoint's path, or ckpt_path=None to start fresh."
            )
        return Path(callback.best_model_path)
    if ckpt_path == "last":
        return _last(trainer, stage)
    if ckpt_path == "hpc":
        found = _latest(hpc_checkpoints(trainer))
        if found is None:
            raise MisconfigurationError(
                f'ckpt_path="hpc" but {trainer.default_root_dir!r} holds no hpc_ckpt_*.ckpt (they are written when '
                "the job is preempted). Pass a checkpoint's path, \"last\", or None to start fresh."
            )
        return found
    path = Path(ckpt_path)
    if path.is_dir():
        found = sorted(path.glob("*.ckpt"))
        raise MisconfigurationError(
            f"ckpt_path={str(ckpt_path)!r} is a directory; pass one checkpoint file"
            + (f" (it holds {', '.join(p.name for p in found[:3])}{', …' if len(found) > 3 else ''})" if found else "")
            + ", or ckpt_path=\"last\" to resume from the newest this run's ModelCheckpoint knows."
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"ckpt_path={str(ckpt_path)!r} does not exist. Check the path, or pass ckpt_path=None to start fresh."
        )
    return path


def _last(trainer: Any, stage: str) -> Path | None:
    candidates = [path for callback in trainer.checkpoint_callbacks for path in callback.last_checkpoints(trainer)]
    candidates += [Path(c.ckpt_path) for c in trainer.callbacks if isinstance(c, OnExceptionCheckpoint)]
    candidates += own_hpc_checkpoints(trainer, 'ckpt_path="last"')
    existing = [path for path in candidates if path.is_file()]
    if not existing:
        warnings.warn(
            f'ckpt_path="last" found no checkpoint to resume from, so {stage} starts from scratch. '
            "ModelCheckpoint(save_last=True) writes one as training goes.",
            stacklevel=5,
        )
        return None
    return max(existing, key=lambda path: path.stat().st_mtime_ns)


def hpc_checkpoints(trainer: Any) -> list[Path]:
    """Every ``hpc_ckpt_<n>.ckpt`` in default_root_dir, whichever run wrote it."""
    directory = Path(trainer.default_root_dir)
    if not directory.is_dir():
        return []
    return [path for path in directory.iterdir() if HPC_NAME.match(path.name)]


def run_identity(trainer: Any) -> dict[str, str | None]:
    """What a preemption checkpoint records of its run: the log directory, and the SLURM job (a requeued job keeps
    its id, while its logger may start a new version directory)."""
    return {"log_dir": os.path.abspath(trainer.log_dir), "slurm_job": slurm_job_id() or None}


def slurm_job_id() -> str:
    """The SLURM job (``<array job>_<task>`` for an array task), or "" outside SLURM."""
    if not under_slurm():
        return ""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if array_job else os.environ.get("SLURM_JOB_ID", "")


def own_hpc_checkpoints(trainer: Any, purpose: str) -> list[Path]:
    """The preemption checkpoints of this run: written under this SLURM job, else for this log directory. The
    others are left out with a warning that names them (an earlier experiment in the same default_root_dir)."""
    identity = run_identity(trainer)
    own, foreign = [], []
    for path in hpc_checkpoints(trainer):
        recorded = _recorded_run(path)
        same_job = identity["slurm_job"] is not None and recorded.get("slurm_job") == identity["slurm_job"]
        (own if same_job or recorded.get("log_dir") == identity["log_dir"] else foreign).append(path)
    if foreign and trainer.is_global_zero:
        names = ", ".join(sorted(path.name for path in foreign))
        warnings.warn(
            f"{purpose} leaves out {names} in {trainer.default_root_dir}: saved when another run was preempted (a "
            f"different log directory than this run's, {identity['log_dir']}, or SLURM job). To resume from one, pass "
            "its path as ckpt_path.",
            UserWarning, stacklevel=5,
        )
    return own


def _recorded_run(path: Path) -> dict[str, Any]:
    """The run a preemption checkpoint names; {} for a file without one (Lightning's, an older tribus's) or one that
    cannot be read. Memory-mapped, so the weights are not read."""
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # whatever makes it unreadable, it is not known to be this run's
        return {}
    recorded = checkpoint.get(RUN_KEY) if isinstance(checkpoint, dict) else None
    return recorded if isinstance(recorded, dict) else {}


def _latest(found: list[Path]) -> Path | None:
    return max(found, key=lambda path: int(HPC_NAME.match(path.name).group(1))) if found else None
