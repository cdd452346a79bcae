"""ThroughputMonitor: batches, samples, items and FLOPs per second, per stage, to the loggers."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from auxiliary.logger_metrics import logging_due
from engineering import Callback, MisconfigurationError, events, ignores


class Throughput:
    """Rolling rates over the last ``window_size`` updates: feed it running totals with ``update``, read
    ``compute``. Per-device rates carry a ``device/`` prefix; with ``world_size > 1`` global ones (× world size)
    are added. FLOPs per second need ``flops`` per update; MFU needs ``available_flops`` (per device) too."""

    def __init__(self, available_flops: float | None = None, world_size: int = 1, window_size: int = 100,
                 separator: str = "/") -> None:
        if window_size < 2:
            raise MisconfigurationError(f"Throughput(window_size={window_size}) needs at least 2 updates to rate.")
        self.available_flops = available_flops
        self.world_size = world_size
        self.window_size = window_size
        self.separator = separator
        self.reset()

    def reset(self) -> None:
        self._time: deque[float] = deque(maxlen=self.window_size)
        self._batches: deque[int] = deque(maxlen=self.window_size)
        self._samples: deque[int] = deque(maxlen=self.window_size)
        self._lengths: deque[int] = deque(maxlen=self.window_size)
        self._flops: deque[float] = deque(maxlen=self.window_size)

    def update(self, *, time: float, batches: int, samples: int, lengths: int | None = None,
               flops: float | None = None) -> None:
        """Totals so far (``time`` in seconds, counts per device), and ``flops`` spent since the last update."""
        if samples < batches:
            raise ValueError(f"samples ({samples}) cannot be fewer than batches ({batches}): pass running totals.")
        if lengths is not None and lengths < samples:
            raise ValueError(f"lengths ({lengths}) cannot be fewer than samples ({samples}): pass running totals.")
        self._time.append(time)
        self._batches.append(batches)
        self._samples.append(samples)
        if lengths is not None:
            self._lengths.append(lengths)
        if flops is not None:
            self._flops.append(flops * self.world_size)

    def compute(self) -> dict[str, float]:
        device = f"device{self.separator}"
        several = self.world_size > 1
        metrics: dict[str, float] = {"time": self._time[-1], "batches": self._batches[-1],
                                     "samples": self._samples[-1]}
        if self._lengths:
            metrics["lengths"] = self._lengths[-1]
        if len(self._time) < self.window_size:
            return metrics  # rates only over a full window, as in Lightning
        elapsed = self._time[-1] - self._time[0]
        rates = {"batches_per_sec": (self._batches[-1] - self._batches[0]) / elapsed,
                 "samples_per_sec": (self._samples[-1] - self._samples[0]) / elapsed}
        if len(self._lengths) == self.window_size:
            rates["items_per_sec"] = (self._lengths[-1] - self._lengths[0]) / elapsed
        for name, rate in rates.items():
            metrics[device + name] = rate
            if several:
                metrics[name] = rate * self.world_size
        if len(self._flops) == self.window_size:
            flops_per_sec = (sum(self._flops) - self._flops[0]) / elapsed  # the first update's FLOPs precede the window
            metrics[device + "flops_per_sec"] = flops_per_sec / self.world_size
            if several:
                metrics["flops_per_sec"] = flops_per_sec
            if self.available_flops:
                metrics[device + "mfu"] = flops_per_sec / self.world_size / self.available_flops
        return metrics


class ThroughputMonitor(Callback):
    """Measure throughput in each stage and send it to the loggers as ``<stage>/<metric>`` (stages "train",
    "validate", "test", "predict"; metrics as ``Throughput`` names them).

    ``batch_size_fn(batch)`` gives a batch's sample count, ``length_fn(batch)`` (optional) its item count (e.g.
    tokens). FLOPs come from the module's ``flops_per_batch`` attribute when it has one; MFU from those and
    ``available_flops`` (FLOP/s of one device, which the user gives). Training values go out every
    ``log_every_n_steps``, evaluation ones after every batch; time spent validating is not counted as training.
    Global rank 0 measures and logs.
    """

    def __init__(self, batch_size_fn: Callable[[Any], int], length_fn: Callable[[Any], int] | None = None,
                 available_flops: float | None = None, window_size: int = 100, separator: str = "/") -> None:
        self.batch_size_fn = batch_size_fn
        self.length_fn = length_fn
        self.available_flops = available_flops
        self.window_size = window_size
        self.separator = separator
        self._throughputs: dict[str, Throughput] = {}
        self._started: dict[str, float] = {}
        self._counts: dict[str, dict[str, int]] = {}

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        stages = ("train", "validate") if stage == "fit" else (stage,)
        for name in stages:
            self._throughputs[name] = Throughput(self.available_flops, trainer.world_size, self.window_size,
                                                 self.separator)

    def _start(self, stage: str) -> None:
        self._throughputs[stage].reset()
        self._counts[stage] = {"batches": 0, "samples": 0, "lengths": 0}
        self._started[stage] = time.perf_counter()

    @torch.inference_mode()  # in case batch_size_fn or length_fn computes with tensors
    def _update(self, trainer: Any, pl_module: Any, stage: str, batch: Any) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # the clock must not run ahead of the device
        elapsed = time.perf_counter() - self._started[stage]
        counts = self._counts[stage]
        counts["batches"] += 1
        counts["samples"] += self.batch_size_fn(batch)
        if self.length_fn is not None:
            counts["lengths"] += self.length_fn(batch)
        self._throughputs[stage].update(
            time=elapsed, batches=counts["batches"], samples=counts["samples"],
            lengths=counts["lengths"] if self.length_fn is not None else None,
            flops=getattr(pl_module, "flops_per_batch", None),
        )

    def _log(self, trainer: Any, stage: str, step: int) -> None:
        computed = self._throughputs[stage].compute()
        metrics = {f"{stage}{self.separator}{name}": value for name, value in computed.items()}
        trainer.emit(events.log_metrics, metrics=metrics, step=step)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self._start("train")

    @ignores("outputs")
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        due = logging_due(trainer)  # read before the step count moves: the Trainer's own flush decides alike
        self._update(trainer, pl_module, "train", batch)
        if due:
            self._log(trainer, "train", trainer.progress.batches_that_stepped)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            self._start("validate")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            self._evaluation_batch_end(trainer, pl_module, "validate", batch)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and trainer.state.fn == "fit":
            # Training's clock stands still while validation runs inside fit.
            self._started["train"] += time.perf_counter() - self._started["validate"]

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self._start("test")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        if trainer.is_global_zero:
            self._evaluation_batch_end(trainer, pl_module, "test", batch)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self._start("predict")

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        if trainer.is_global_zero:
            self._evaluation_batch_end(trainer, pl_module, "predict", batch)

    def _evaluation_batch_end(self, trainer: Any, pl_module: Any, stage: str, batch: Any) -> None:
        self._update(trainer, pl_module, stage, batch)
        self._log(trainer, stage, self._counts[stage]["batches"])
