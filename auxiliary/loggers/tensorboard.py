"""TensorBoardLogger: scalars and hyperparameters through tensorboard's own event-file writer."""

from __future__ import annotations

import os
from typing import Any

from auxiliary.loggers.versioned import VersionedDirectoryLogger


class TensorBoardLogger(VersionedDirectoryLogger):
    """Writes ``events.out.tfevents.*`` under ``save_dir/name/version_N``; tensorboard loads on first use."""

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None, log_graph: bool = False,
                 default_hp_metric: bool = True, **writer_options: Any) -> None:
        super().__init__(save_dir, name, version)
        self.log_graph_enabled = log_graph
        self.default_hp_metric = default_hp_metric
        self._writer_options = writer_options
        self._writer: Any = None

    @property
    def experiment(self) -> Any:
        """The tensorboard ``SummaryWriter``; created (and tensorboard imported) on first access."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            os.makedirs(self.log_dir, exist_ok=True)
            self._writer = SummaryWriter(log_dir=self.log_dir, **self._writer_options)
        return self._writer

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for name, value in metrics.items():
            self.experiment.add_scalar(name, value, step)

    def log_hyperparams(self, params: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
        self.hparams.update(params)
        self.save_hparams()
        if metrics is None and self.default_hp_metric:
            metrics = {"hp_metric": -1}
        if metrics:
            from torch.utils.tensorboard.summary import hparams

            flat = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                    for key, value in self.hparams.items()}
            experiment, session_start, session_end = hparams(flat, metrics)
            writer = self.experiment.file_writer
            for summary in (experiment, session_start, session_end):
                writer.add_summary(summary)
            for name, value in metrics.items():
                self.experiment.add_scalar(name, value, 0)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        if self.log_graph_enabled and input_array is not None:
            self.experiment.add_graph(model, input_array)

    def save(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def finalize(self, status: str) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
