"""CSVLogger: ``metrics.csv`` (a header that grows with new keys) and ``hparams.yaml``."""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Mapping
from typing import Any

from auxiliary.loggers.versioned import VersionedDirectoryLogger, as_dict
from auxiliary.ranks import rank_zero_only


class CSVLogger(VersionedDirectoryLogger):
    """Writes ``save_dir/name/version_N/metrics.csv``, one row per ``log_metrics`` call, flushed at once.

    Rows are appended; when a new key appears the file is rewritten under the wider header, its columns in
    sorted order as Lightning writes them, so it always reads back with the csv module or pandas. Hyperparameters go
    to ``hparams.yaml`` beside it. Only global rank 0 writes. A full disk or a read-only directory: one warning
    naming the file and the fix, then no more writes; training goes on.

    Args:
        save_dir: The directory that holds every run's logs.
        name: The experiment's directory under ``save_dir``; ``None`` writes versions directly into it.
        version: The run's number (``version_N``) or directory name; ``None`` takes the next free number.

    Example:
        ```python
        trainer = Trainer(logger=CSVLogger("logs"))  # logs/lightning_logs/version_0/metrics.csv
        ```
    """

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None) -> None:
        super().__init__(save_dir, name, version)
        self._columns: list[str] = []

    @property
    def metrics_file_path(self) -> str:
        """The path of ``metrics.csv``."""
        return os.path.join(self.log_dir, "metrics.csv")

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Append one row: ``step`` and the metrics, under the header widened by any new key.

        Args:
            metrics: Metric names and values, already floats.
            step: The value of the ``step`` column (the Trainer passes ``global_step``).
        """
        self.write_or_stop(lambda: self._append({"step": step, **metrics}), lambda: self.metrics_file_path)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace) -> None:
        """Add ``params`` to the run's hyperparameters and rewrite ``hparams.yaml``.

        Args:
            params: A mapping or parsed command-line arguments; values YAML cannot hold are written
                as their ``repr``.
        """
        self.hparams.update(as_dict(params))
        self.save_hparams()

    def _append(self, row: dict[str, Any]) -> None:
        new_columns = [key for key in row if key not in self._columns]
        if not new_columns:
            self._write([row], mode="a")
            return
        earlier_rows = self._read_rows() if self._columns else []
        self._columns = sorted(self._columns + new_columns)
        self._write(earlier_rows + [row], mode="w")

    def _read_rows(self) -> list[dict[str, str]]:
        with open(self.metrics_file_path, newline="") as file:
            return list(csv.DictReader(file))

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        with open(self.metrics_file_path, mode, newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self._columns)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)
