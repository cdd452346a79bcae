"""CSVLogger: ``metrics.csv`` (a header that grows with new keys) and ``hparams.yaml``."""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Mapping
from typing import Any

import torch

from auxiliary.loggers.versioned import VersionedDirectoryLogger, as_dict
from auxiliary.ranks import rank_zero_only


class CSVLogger(VersionedDirectoryLogger):
    """Writes ``save_dir/name/version_N/metrics.csv``, one row per ``log_metrics`` call, and ``hparams.yaml``.

    Rows wait in ``experiment.metrics`` and reach the file every ``flush_logs_every_n_steps`` steps (when
    ``(step + 1)`` is a multiple of it), on ``save()``, and when the run ends; after a flush the file reads
    back with the csv module or pandas. When a new key appears the file is rewritten under the wider header,
    its columns in sorted order as Lightning writes them. Only global rank 0 writes. A full disk or a read-only
    directory: one warning naming the file and the fix, then no more writes; training goes on.

    Args:
        save_dir: The directory that holds every run's logs.
        name: The experiment's directory under ``save_dir``; ``None`` writes versions directly into it.
        version: The run's number (``version_N``) or directory name; ``None`` takes the next free number.
        prefix: Put before every metric name, joined with ``-``.
        flush_logs_every_n_steps: Write the waiting rows to disk every this many steps.

    Example:
        ```python
        trainer = Trainer(logger=CSVLogger("logs"))  # logs/lightning_logs/version_0/metrics.csv
        ```
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None, prefix: str = "", flush_logs_every_n_steps: int = 100) -> None:
        super().__init__(save_dir, name, version)
        self._prefix = prefix
        self._flush_logs_every_n_steps = flush_logs_every_n_steps
        self._experiment: MetricsWriter | None = None

    @property
    def experiment(self) -> MetricsWriter:
        """The writer of ``metrics.csv``, created (with ``log_dir``) on first use."""
        if self._experiment is None:
            self._experiment = MetricsWriter(self.log_dir)
        return self._experiment

    @property
    def metrics_file_path(self) -> str:
        """The path of ``metrics.csv``."""
        return os.path.join(self.log_dir, MetricsWriter.NAME_METRICS_FILE)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Add one row: ``step`` and the metrics; flush when ``step + 1`` is a multiple of ``flush_logs_every_n_steps``.

        Args:
            metrics: Metric names and values (floats or one-element tensors).
            step: The value of the ``step`` column (the Trainer passes ``global_step``); without it, the
                number of rows waiting to be written, as Lightning counts.
        """
        if self._prefix:
            metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{key}": value for key, value in metrics.items()}
        self.write_or_stop(lambda: self._add_row(metrics, step), lambda: self.metrics_file_path)

    def _add_row(self, metrics: dict[str, float], step: int | None) -> None:
        experiment = self.experiment
        if step is None:
            step = len(experiment.metrics)
        experiment.log_metrics(metrics, step)
        if (step + 1) % self._flush_logs_every_n_steps == 0:
            experiment.save()

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace) -> None:
        """Add ``params`` to the run's hyperparameters and rewrite ``hparams.yaml``.

        Args:
            params: A mapping or parsed command-line arguments; a value YAML cannot represent is left
                out with a warning, as Lightning does.
        """
        self.hparams.update(as_dict(params))
        self.save_hparams()

    @rank_zero_only
    def save(self) -> None:
        """Write the waiting rows to ``metrics.csv``."""
        self.write_or_stop(lambda: self.experiment.save(), lambda: self.metrics_file_path)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Write what is left when the run ends (nothing to do if nothing was logged)."""
        if self._experiment is not None:
            self.save()


class MetricsWriter:
    """``metrics.csv`` for one run: rows wait in ``metrics`` until ``save`` appends them under a sorted header."""

    NAME_METRICS_FILE = "metrics.csv"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = []
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        os.makedirs(log_dir, exist_ok=True)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Keep one row (tensors as Python numbers) for the next ``save``."""
        row = {key: value.item() if isinstance(value, torch.Tensor) else value for key, value in metrics.items()}
        row["step"] = step
        self.metrics.append(row)

    def save(self) -> None:
        """Append the waiting rows; first rewrite the file under the wider header when a row brings a new key."""
        if not self.metrics:
            return
        new_keys = set().union(*self.metrics) - set(self.metrics_keys)
        self.metrics_keys = sorted([*self.metrics_keys, *new_keys])
        exists = os.path.isfile(self.metrics_file_path)
        if new_keys and exists:
            with open(self.metrics_file_path, newline="") as file:
                earlier = list(csv.DictReader(file))
            self._write(earlier, mode="w")
        self._write(self.metrics, mode="a" if exists else "w")
        self.metrics = []

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        with open(self.metrics_file_path, mode, newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)
