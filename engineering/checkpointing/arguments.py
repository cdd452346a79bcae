"""ModelCheckpoint's arguments, checked together when it is built: a bad combination never starts a run."""

from __future__ import annotations

from typing import Any

from engineering.errors import MisconfigurationError


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
