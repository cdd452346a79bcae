"""Checkpoint: the base class Lightning's checkpoint callbacks share, for ``isinstance`` checks and subclassing."""

from __future__ import annotations

from abc import ABCMeta

from engineering import Callback, ModelCheckpoint, OnExceptionCheckpoint


class Checkpoint(Callback, metaclass=ABCMeta):
    """The base class of callbacks that write checkpoints. ``ModelCheckpoint`` and ``OnExceptionCheckpoint``
    count as ``Checkpoint`` (registered: they live in engineering, below this package)."""


Checkpoint.register(ModelCheckpoint)
Checkpoint.register(OnExceptionCheckpoint)
