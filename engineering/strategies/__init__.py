"""Strategies: how a run is laid out over processes and devices, chosen in one place."""

from __future__ import annotations

from typing import Any

from engineering.accelerators import torch_device
from engineering.errors import MisconfigurationError
from engineering.optimization.precision import create_precision
from engineering.strategies.environment import ClusterEnvironment, detect
from engineering.strategies.parallel import ParallelStrategy
from engineering.strategies.single import SingleDeviceStrategy, Strategy

STRATEGIES = ("auto", "single_device", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "xla")


def create_strategy(
    strategy: Any, accelerator: str, device_indices: list[int], num_nodes: int, precision: str,
    sync_batchnorm: bool = False,
) -> Strategy:
    """The strategy for the Trainer's ``strategy``, ``accelerator``, ``devices`` and ``num_nodes`` flags.

    ``strategy`` is a name or a strategy object; either way it leaves here placed on its device.
    """
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise MisconfigurationError(f"strategy={strategy!r} is not supported; choose one of {list(STRATEGIES)}.")
        processes = len(device_indices) * num_nodes
        if strategy == "single_device" and processes > 1:
            raise MisconfigurationError(
                f"strategy='single_device' runs one device, but devices/num_nodes ask for {processes}. "
                "Use strategy='ddp' or devices=1."
            )
        if strategy == "xla" or (strategy == "auto" and accelerator == "xla"):
            if accelerator != "xla":
                raise MisconfigurationError(f"strategy='xla' needs accelerator='xla' (or 'tpu'), not {accelerator!r}.")
            if processes > 1:
                raise MisconfigurationError(
                    f"XLA runs one device per process here; devices/num_nodes ask for {processes}. Use devices=1."
                )
            from engineering.strategies.xla import XLAStrategy  # torch_xla is imported only if used

            strategy = XLAStrategy()
        elif strategy == "single_device" or (strategy == "auto" and processes == 1):
            strategy = SingleDeviceStrategy()
        elif strategy == "fsdp":
            from engineering.strategies.fsdp import FSDPStrategy  # torch.distributed is imported only if used

            strategy = FSDPStrategy()
        else:
            from engineering.strategies.ddp import DDPStrategy

            strategy = DDPStrategy(
                find_unused_parameters=strategy == "ddp_find_unused_parameters_true",
                start_method="spawn" if strategy == "ddp_spawn" else "popen",
            )
    elif not isinstance(strategy, Strategy):
        raise MisconfigurationError(
            f"strategy={type(strategy).__name__} is not a strategy; pass a name from {list(STRATEGIES)} or a "
            "Strategy object (SingleDeviceStrategy, DDPStrategy, ...)."
        )

    if strategy.distributed:
        environment = detect(len(device_indices), num_nodes)
        device = torch_device(accelerator, device_indices[environment.local_rank % len(device_indices)])
        strategy.connect(device, create_precision(precision, device.type), environment=environment,
                         device_indices=device_indices, sync_batchnorm=sync_batchnorm)
    else:
        device = torch_device(accelerator, device_indices[0])
        strategy.connect(device, create_precision(precision, device.type))
    return strategy


__all__ = ["STRATEGIES", "ClusterEnvironment", "ParallelStrategy", "SingleDeviceStrategy", "Strategy", "create_strategy"]
