"""The Logger base: what the Trainer knows of a logger. Concrete loggers live in ``auxiliary``.

A Logger hears the bus's ``log_metrics`` and ``log_hyperparams`` events (plain floats, rank 0 only);
the Trainer asks it for ``log_dir`` and ``version``, and calls ``finalize`` when a run ends.
"""

from __future__ import annotations

from typing import Any


class Logger:
    """Subclass it and implement ``log_metrics`` and ``log_hyperparams``."""

    # True: the run calls log_metrics and log_hyperparams from its log writer thread, in order, so a slow disk
    # never holds a step up (engineering/bus/log_writer.py). False: on the training thread, as Lightning does.
    writes_in_background = False

    @property
    def name(self) -> str | None:
        return None

    @property
    def version(self) -> int | str | None:
        return None

    @property
    def root_dir(self) -> str | None:
        return None

    @property
    def save_dir(self) -> str | None:
        return None

    @property
    def log_dir(self) -> str | None:
        return None

    @property
    def experiment(self) -> Any:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        raise NotImplementedError

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_graph(self, model: Any, input_array: Any = None) -> None: ...

    def save(self) -> None: ...

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """``checkpoint_callback`` (a ModelCheckpoint) just wrote a file; trackers may upload it."""

    def finalize(self, status: str) -> None:
        """The run ended with ``status`` ("success", "failed" or "interrupted"): flush and close."""
        self.save()
