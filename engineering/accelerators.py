"""Which hardware to run on: ``accelerator`` and ``devices`` resolved to torch devices, in one place."""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Any

import torch

from engineering.errors import MisconfigurationError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "xla")


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def _xla_available() -> bool:
    return importlib.util.find_spec("torch_xla") is not None


def available_accelerators() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    if _xla_available():
        found.append("xla")
    return found


def auto_accelerator() -> str:
    """What accelerator="auto" picks: a CUDA GPU, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if _mps_available() else "cpu"


def resolve_accelerator(accelerator: Any) -> str:
    """The concrete accelerator name for a Trainer flag value; 'gpu' and 'tpu' are aliases."""
    if not isinstance(accelerator, str) or accelerator.lower() not in ACCELERATORS:
        raise MisconfigurationError(
            f"accelerator={accelerator!r} is not supported; choose one of {list(ACCELERATORS)}."
        )
    name = accelerator.lower()
    if name == "auto":
        return auto_accelerator()
    if name == "gpu":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        name = "cuda"  # report the missing CUDA below
    name = {"tpu": "xla"}.get(name, name)
    if name not in available_accelerators():
        raise MisconfigurationError(
            f"accelerator={accelerator!r} was requested but is not available on this machine. "
            f"Available: {available_accelerators()}. Use accelerator='auto' to pick the best one."
        )
    return name


def _warn_about_cpu_processes(processes: int) -> None:
    """More CPU processes than cores only compete for them (Lightning starts them without a word)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if processes > cores:
        warnings.warn(
            f"Trainer(devices={processes}) on the CPU starts {processes} processes, but this process may use "
            f"{cores} CPU core(s): they compete for the cores and every step is slower. Set devices={cores} or fewer.",
            UserWarning, stacklevel=4,
        )


def resolve_devices(accelerator: str, devices: Any) -> list[int]:
    """Device indices for ``devices`` (int, -1, 'auto', list of indices, or a string like '0,1')."""
    count = _device_count(accelerator)
    if isinstance(devices, str) and devices != "auto":
        text = devices.strip()
        devices = int(text) if "," not in text else [int(part) for part in text.split(",") if part.strip()]
    if devices == "auto":
        return list(range(count)) if accelerator != "cpu" else [0]
    if isinstance(devices, bool) or not isinstance(devices, (int, list, tuple)):
        raise MisconfigurationError(
            f"devices={devices!r} is not understood; pass an int, -1 for all, 'auto', or a list of indices."
        )
    if isinstance(devices, int):
        if devices == -1:
            return list(range(count))
        if devices <= 0:
            raise MisconfigurationError(f"devices={devices} must be a positive count, -1 (all) or 'auto'.")
        if accelerator != "cpu" and devices > count:
            raise MisconfigurationError(
                f"devices={devices} but only {count} {accelerator} device(s) are available."
            )
        if accelerator == "cpu":
            _warn_about_cpu_processes(devices)
        return list(range(devices))
    indices = [int(index) for index in devices]
    missing = [index for index in indices if index >= count or index < 0]
    if accelerator != "cpu" and missing:
        raise MisconfigurationError(
            f"devices={list(devices)} names {missing}, but this machine has {accelerator} indices 0..{count - 1}."
        )
    return indices


def torch_device(accelerator: str, index: int) -> torch.device:
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator == "mps":
        return torch.device("mps")
    if accelerator == "xla":
        import torch_xla  # heavy: imported only when XLA is really used

        return torch_xla.device()
    return torch.device("cuda", index)


def _device_count(accelerator: str) -> int:
    if accelerator == "cuda":
        return torch.cuda.device_count()
    if accelerator == "mps":
        return 1
    if accelerator == "xla":
        import torch_xla.runtime as xr

        return xr.addressable_runtime_device_count()
    return 1
