"""The ProgressBar base: how the Trainer recognises a progress bar. The bars themselves live in ``auxiliary``."""

from __future__ import annotations

from typing import Any

from engineering.bus.callback import Callback


class ProgressBar(Callback):
    """The base every progress bar shares; ``get_metrics`` is what a bar shows next to the count.

    Subclass it for a bar of your own: a Trainer given any ``ProgressBar`` in ``callbacks`` does not add
    the default ``TQDMProgressBar``, and ``trainer.progress_bar_callback`` is the first one.
    """

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        """What the bar shows next to the count; override it to add, rename or hide values.

        Args:
            trainer: The Trainer running.
            pl_module: The module it trains.

        Returns:
            ``v_num`` (the logger's version, when there is a logger), then every metric logged with
            ``prog_bar=True``, as floats read from the device in one transfer.
        """
        metrics: dict[str, Any] = {}
        version = trainer.logger.version if trainer.logger is not None else None
        if version is not None:
            metrics["v_num"] = version
        metrics.update(trainer.progress_bar_metrics)
        return metrics
