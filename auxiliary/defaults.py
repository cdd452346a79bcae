"""Factories for the default subscribers, registered under the ``tribus.callbacks`` entry points.

Each is called with the Trainer and returns a subscriber, or None when the Trainer's flags turn it off
or the user already passed one of the same kind.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from engineering import Logger


def progress_bar(trainer: Any) -> Any:
    from auxiliary.progress import ProgressBar, TQDMProgressBar

    if not trainer.enable_progress_bar or any(isinstance(c, ProgressBar) for c in trainer.callbacks):
        return None
    return TQDMProgressBar()


def model_summary(trainer: Any) -> Any:
    from auxiliary.model_summary import ModelSummary

    if not trainer.enable_model_summary or any(isinstance(c, ModelSummary) for c in trainer.callbacks):
        return None
    return ModelSummary()


def logger(trainer: Any) -> Logger:
    """TensorBoard when tensorboard is installed, CSV otherwise, under ``default_root_dir``."""
    if importlib.util.find_spec("tensorboard") is not None:
        from auxiliary.loggers.tensorboard import TensorBoardLogger

        return TensorBoardLogger(trainer.default_root_dir)
    from auxiliary.loggers.csv import CSVLogger

    return CSVLogger(trainer.default_root_dir)
