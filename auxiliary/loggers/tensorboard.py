"""TensorBoardLogger: scalars, hyperparameters and the model graph through tensorboard's own event-file writer."""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from auxiliary.loggers.versioned import VersionedDirectoryLogger, as_dict
from auxiliary.ranks import rank_zero_only


class TensorBoardLogger(VersionedDirectoryLogger):
    """Writes ``events.out.tfevents.*`` under ``save_dir/name/version_N``; tensorboard loads on first use.

    ``default_hp_metric`` writes ``hp_metric = -1`` with the hyperparameters, so TensorBoard's HPARAMS tab
    lists the run; log your own ``hp_metric`` to replace it. ``log_graph`` writes the model graph traced
    from ``example_input_array`` when ``log_graph(model)`` is called. Only global rank 0 writes. A full disk or a
    read-only directory: one warning naming the file and the fix, then no more writes; training goes on.

    Args:
        save_dir: The directory that holds every run's logs.
        name: The experiment's directory under ``save_dir``; ``None`` writes versions directly into it.
        version: The run's number (``version_N``) or directory name; ``None`` takes the next free number.
        log_graph: Let ``log_graph(model)`` write the model graph (it does nothing otherwise).
        default_hp_metric: Log ``hp_metric = -1`` with the hyperparameters when no metrics come with them.
        **writer_options: Passed to ``torch.utils.tensorboard.SummaryWriter`` (``flush_secs``, ``max_queue``, ...).

    Example:
        ```python
        trainer = Trainer(logger=TensorBoardLogger("logs", name="mnist"))  # tensorboard --logdir logs
        ```
    """

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

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Write each metric as a scalar at ``step``, all of them in one event: one record of the event file
        (and one checksum, which tensorboard computes in Python) per call, not one per metric.

        Args:
            metrics: Metric names (the scalar's tag) and values, already floats.
            step: The x-axis value (the Trainer passes ``global_step``).
        """
        def write() -> None:
            from tensorboard.compat.proto.summary_pb2 import Summary

            # The record torch's ``summary.scalar`` builds for a number, without its round trip through numpy.
            values = [Summary.Value(tag=name, simple_value=float(number)) for name, number in metrics.items()]
            if values:
                self.experiment.file_writer.add_summary(Summary(value=values), step)

        self.write_or_stop(write, self._event_file)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace,
                        metrics: dict[str, float] | None = None) -> None:
        """Record hyperparameters in ``hparams.yaml`` and TensorBoard's HPARAMS tab.

        Args:
            params: A mapping or parsed command-line arguments; nested mappings show as ``outer/inner``.
            metrics: Metrics to show beside them; ``None`` shows ``hp_metric = -1`` when
                ``default_hp_metric`` is set.
        """
        self.hparams.update(as_dict(params))
        self.save_hparams()
        if metrics is None and self.default_hp_metric:
            metrics = {"hp_metric": -1}
        if not metrics:
            return
        from torch.utils.tensorboard.summary import hparams

        summaries = hparams(_flat_primitives(self.hparams), metrics)
        self.write_or_stop(lambda: [self.experiment.file_writer.add_summary(summary) for summary in summaries],
                           self._event_file)
        self.log_metrics(metrics, 0)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Trace ``model`` on an example input and write its graph; nothing unless ``log_graph=True``.

        Args:
            model: The module to trace.
            input_array: Its input; ``None`` takes ``model.example_input_array``.

        Raises:
            ValueError: ``log_graph=True`` and there is no example input to trace with.
        """
        if not self.log_graph_enabled:
            return
        example = getattr(model, "example_input_array", None) if input_array is None else input_array
        if example is None:
            raise ValueError(
                "TensorBoardLogger(log_graph=True) needs an example input to trace the model: set "
                "`self.example_input_array` in the module's __init__, or pass input_array."
            )
        device = next(model.parameters(), torch.empty(0)).device
        if isinstance(example, torch.Tensor):
            example = example.to(device)
        elif isinstance(example, (list, tuple)):
            example = type(example)(item.to(device) if isinstance(item, torch.Tensor) else item for item in example)
        with warnings.catch_warnings():
            # add_graph traces with torch.jit.trace, which torch deprecates; nothing a user can act on.
            warnings.filterwarnings("ignore", message=".*torch.jit.trace.*", category=FutureWarning)
            self.write_or_stop(lambda: self.experiment.add_graph(model, example), self._event_file)

    @rank_zero_only
    def save(self) -> None:
        """Flush what the writer holds to disk."""
        if self._writer is not None:
            self.write_or_stop(self._writer.flush, self._event_file)

    def finalize(self, status: str) -> None:
        """Flush and close the writer; the Trainer calls it when a run ends (``status`` says how)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self.write_or_stop(writer.flush, self._event_file)
            with contextlib.suppress(OSError):  # a writer that failed raises its error again; it was reported
                writer.close()

    def _event_file(self) -> str:
        """The event file being written (tensorboard's writer names it when it starts)."""
        found = sorted(glob.glob(os.path.join(glob.escape(self.log_dir), "events.out.tfevents.*")))
        return found[-1] if found else os.path.join(self.log_dir, "events.out.tfevents.*")


def _flat_primitives(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested hyperparameters as ``{"optimizer/lr": 0.1}``, with values TensorBoard can show."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat_primitives(value, prefix=f"{name}/"))
        elif isinstance(value, torch.Tensor) and value.numel() == 1:
            flat[name] = value.item()
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
