"""The errors a user can cause, each raised with a message that names the fix."""

from __future__ import annotations

from research.checkpoint_io import CheckpointError


class MisconfigurationError(ValueError):
    """A Trainer, module or hook was configured in a way that cannot work; the message says the fix."""


__all__ = ["CheckpointError", "MisconfigurationError"]
