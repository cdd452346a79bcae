"""CSVLogger: ``metrics.csv`` (a header that grows with new keys) and ``hparams.yaml``."""

from __future__ import annotations

import csv
import os
from typing import Any

from auxiliary.loggers.versioned import VersionedDirectoryLogger


class CSVLogger(VersionedDirectoryLogger):
    """Rows are appended and flushed as they come; when a new key appears the file is rewritten."""

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None) -> None:
        super().__init__(save_dir, name, version)
        self._columns: list[str] = []
        self._rows: list[dict[str, Any]] = []

    @property
    def metrics_file_path(self) -> str:
        return os.path.join(self.log_dir, "metrics.csv")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {"step": step, **metrics}
        self._rows.append(row)
        new_columns = [key for key in row if key not in self._columns]
        os.makedirs(self.log_dir, exist_ok=True)
        if new_columns:
            self._columns += new_columns
            self._write(self._rows, mode="w")  # the header changed: rewrite everything under it
        else:
            self._write([row], mode="a")

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)
        self.save_hparams()

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        with open(self.metrics_file_path, mode, newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self._columns)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)
