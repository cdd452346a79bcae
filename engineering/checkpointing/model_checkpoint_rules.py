"""ModelCheckpoint's rules: which arguments go together, and which files in its directory are its own.

On resume, a top-k file the restored bookkeeping does not track (a kill landed between writing it and writing
the checkpoint that records it) is deleted, but only when it is provably this callback's: directly in its
``dirpath``, named by its ``filename`` template (with an optional ``-v<n>``), its own saved state that of a
ModelCheckpoint with the same ``state_key`` and directory ranking the file itself among its top k, and taken at
a later step than the checkpoint resumed from, so the resumed run repeats that step and writes it again.
Anything else stays.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from engineering.errors import MisconfigurationError

TEMPLATE_FIELD = re.compile(r"\{([^{}:]+)(:[^{}]*)?\}")


def remove_orphans(callback: Any, trainer: Any) -> list[Path]:
    """Delete the untracked top-k files of ``callback`` that a resumed run will write again; return them."""
    directory = Path(callback.dirpath)
    if not directory.is_dir():
        return []
    tracked = {Path(path).absolute() for path in (*callback.best_k_models, callback.best_model_path,
                                                  callback.last_model_path, trainer.ckpt_path) if path}
    pattern = _name_pattern(callback)
    removed = []
    for path in sorted(directory.iterdir()):
        if path.absolute() in tracked or not path.is_file() or not pattern.fullmatch(path.name):
            continue
        if _written_later_by(path, callback, trainer.global_step):
            path.unlink()
            removed.append(path)
    if removed:
        print(f"ModelCheckpoint: removed {', '.join(p.name for p in removed)} from {directory}: written after the "
              "checkpoint this run resumed from, which does not track them; the resumed run writes them again.")
    return removed


def _name_pattern(callback: Any) -> re.Pattern[str]:
    """Any name ``callback.format_checkpoint_name`` can give, with or without a version suffix."""
    template = callback.filename or "{epoch}" + callback.CHECKPOINT_JOIN_CHAR + "{step}"
    parts, position = [], 0
    for field in TEMPLATE_FIELD.finditer(template):
        parts += [re.escape(template[position:field.start()]), ".+?"]
        position = field.end()
    parts.append(re.escape(template[position:]))
    last = re.escape(callback.CHECKPOINT_NAME_LAST)
    return re.compile(f"(?!{last}){''.join(parts)}(-v\\d+)?{re.escape(callback.FILE_EXTENSION)}")


def _written_later_by(path: Path, callback: Any, resumed_step: int) -> bool:
    """Whether ``path`` holds ``callback``'s own state for its directory, ranking ``path`` itself as a top-k file
    (an on-exception file does not), at a step after ``resumed_step``. Memory-mapped, so the weights are not read;
    a file that cannot be read is not proven anything."""
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        state = checkpoint["callbacks"][callback.state_key]
        ranked = str(path) in state["best_k_models"] or state["best_model_path"] == str(path)
        return ranked and state["dirpath"] == callback.dirpath and int(checkpoint["global_step"]) > resumed_step
    except Exception:  # whatever makes it unreadable or unlike ours, it is not provably ours
        return False


def check_arguments(mode: str, save_last: Any, save_top_k: int, monitor: str | None, every_n_train_steps: int | None,
                     every_n_epochs: int | None, train_time_interval: Any) -> tuple[int, int]:
    """Refuse arguments that cannot work together; return (every_n_train_steps, every_n_epochs) with 0 for "never"."""
    if mode not in ("min", "max"):
        raise MisconfigurationError(f"ModelCheckpoint(mode={mode!r}): use 'min' or 'max'.")
    if save_last not in (None, True, False, "link"):
        raise MisconfigurationError(f"ModelCheckpoint(save_last={save_last!r}): use True, False or 'link'.")
    if save_top_k < -1:
        raise MisconfigurationError(f"ModelCheckpoint(save_top_k={save_top_k}): use -1 (all), 0 (none) or more.")
    if monitor is None and save_top_k not in (-1, 0, 1):
        raise MisconfigurationError(
            f"ModelCheckpoint(save_top_k={save_top_k}) ranks checkpoints by a metric: pass monitor='val_loss' "
            "(or another logged metric), or use save_top_k=1 to keep the latest."
        )
    if every_n_train_steps is None and every_n_epochs is None and train_time_interval is None:
        every_n_epochs, every_n_train_steps = 1, 0
    steps, epochs = every_n_train_steps or 0, every_n_epochs or 0
    if steps < 0 or epochs < 0:
        raise MisconfigurationError("ModelCheckpoint: every_n_train_steps and every_n_epochs must be >= 0.")
    if (steps > 0) + (epochs > 0) + (train_time_interval is not None) > 1:
        raise MisconfigurationError(
            f"ModelCheckpoint got every_n_train_steps={every_n_train_steps}, every_n_epochs={every_n_epochs} "
            f"and train_time_interval={train_time_interval}; choose one of them."
        )
    return steps, epochs
