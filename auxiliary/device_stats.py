"""DeviceStatsMonitor: CPU, memory and CUDA allocator statistics sent to the loggers during training and evaluation."""

from __future__ import annotations

from typing import Any

import torch

from auxiliary.logger_metrics import logging_due, require_logger, send_to_loggers
from engineering import Callback, ignores


class DeviceStatsMonitor(Callback):
    """Log device statistics at the start and end of each logged batch (every ``log_every_n_steps``).

    CPU, via psutil: ``cpu_percent`` (system-wide utilisation), ``cpu_vm_percent`` (system memory in
    use), ``cpu_swap_percent``, and ``process_rss_bytes`` (this process's resident memory). On a CUDA
    device: every counter of ``torch.cuda.memory_stats`` (``allocated_bytes.all.current``, …).
    ``cpu_stats=None`` logs the CPU statistics only when training on the CPU; True or False always or
    never. Keys are prefixed with the hook, e.g. ``DeviceStatsMonitor.on_train_batch_end/cpu_percent``.

    Args:
        cpu_stats: Log the CPU statistics always (``True``), never (``False``), or only when training
            on the CPU (``None``).

    Raises:
        MisconfigurationError: When fit starts, the Trainer has no logger to send the statistics to.
    """

    def __init__(self, cpu_stats: bool | None = None) -> None:
        self.cpu_stats = cpu_stats
        self._process: Any = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            require_logger(trainer, "DeviceStatsMonitor")
        on_cpu = trainer.strategy.root_device.type == "cpu"
        if self.cpu_stats or (self.cpu_stats is None and on_cpu):
            import psutil  # imported here: only runs that log CPU statistics pay for it

            self._process = psutil.Process()
            psutil.cpu_percent()  # the first reading is meaningless; it starts the interval the next one covers

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._process = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._log(trainer, "on_train_batch_start")

    @ignores("outputs")
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._log(trainer, "on_train_batch_end")

    def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._log(trainer, "on_validation_batch_start")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._log(trainer, "on_validation_batch_end")

    def on_test_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._log(trainer, "on_test_batch_start")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._log(trainer, "on_test_batch_end")

    def _log(self, trainer: Any, hook: str) -> None:
        if trainer.sanity_checking or not logging_due(trainer):
            return
        stats = self.device_stats(trainer.strategy.root_device)
        send_to_loggers(trainer, {f"{type(self).__qualname__}.{hook}/{key}": value for key, value in stats.items()})

    def device_stats(self, device: torch.device) -> dict[str, float]:
        """The statistics this monitor logs for ``device``, read now.

        Args:
            device: The device training runs on.

        Returns:
            Name to value: every ``torch.cuda.memory_stats`` counter on a CUDA device, and psutil's CPU
            and memory figures when they are enabled.
        """
        stats: dict[str, float] = {}
        if device.type == "cuda":
            stats.update({key: float(value) for key, value in torch.cuda.memory_stats(device).items()})
        if self._process is not None:
            import psutil

            stats["cpu_percent"] = psutil.cpu_percent()
            stats["cpu_vm_percent"] = psutil.virtual_memory().percent
            stats["cpu_swap_percent"] = psutil.swap_memory().percent
            stats["process_rss_bytes"] = float(self._process.memory_info().rss)
        return stats
