"""Which hardware to run on: ``accelerator`` and ``devices`` resolved to torch devices, in one place.

``trainer.accelerator`` is one of Lightning's accelerator classes (``CPUAccelerator``, ``CUDAAccelerator``,
``MPSAccelerator``, ``XLAAccelerator``), with their static helpers (``is_available``, ``auto_device_count``,
``parse_devices``, ``get_parallel_devices``). The Trainer's flag may also be one of them.
"""

from __future__ import annotations

import abc
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
    """The concrete accelerator name for a Trainer flag value (a name or an ``Accelerator``); 'gpu' and 'tpu' are
    aliases."""
    if isinstance(accelerator, Accelerator):
        accelerator = accelerator.name()
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


class Accelerator(abc.ABC):
    """The hardware a Trainer runs on, as Lightning describes it; subclass one of the four below to adapt one."""

    def setup_device(self, device: torch.device) -> None:
        """Prepare ``device`` before the module moves onto it."""

    def setup(self, trainer: Any) -> None:
        """Called once the Trainer knows its strategy."""

    def teardown(self) -> None:
        """Release what ``setup_device`` took."""

    def get_device_stats(self, device: Any) -> dict[str, Any]:
        """Statistics of ``device`` worth logging; none by default."""
        return {}

    @staticmethod
    @abc.abstractmethod
    def parse_devices(devices: Any) -> Any:
        """The ``devices`` flag in this accelerator's terms."""

    @staticmethod
    @abc.abstractmethod
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        """The torch devices for parsed ``devices``."""

    @staticmethod
    @abc.abstractmethod
    def auto_device_count() -> int:
        """How many devices ``devices="auto"`` uses."""

    @staticmethod
    @abc.abstractmethod
    def is_available() -> bool:
        """Whether this machine has the hardware."""

    @staticmethod
    @abc.abstractmethod
    def name() -> str:
        """The ``accelerator=`` name."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CPUAccelerator(Accelerator):
    """The CPU: ``devices`` is a number of processes, each on the one CPU device."""

    def setup_device(self, device: torch.device) -> None:
        if device.type != "cpu":
            raise MisconfigurationError(f"Device should be CPU, got {device} instead.")

    @staticmethod
    def parse_devices(devices: int | str) -> int:
        if isinstance(devices, str) and devices.strip().isdigit():
            devices = int(devices)
        if isinstance(devices, bool) or not isinstance(devices, int) or devices <= 0:
            raise TypeError("`devices` selected with `CPUAccelerator` should be an int > 0.")
        return devices

    @staticmethod
    def get_parallel_devices(devices: int | str) -> list[torch.device]:
        return [torch.device("cpu")] * CPUAccelerator.parse_devices(devices)

    @staticmethod
    def auto_device_count() -> int:
        return 1

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def name() -> str:
        return "cpu"


class CUDAAccelerator(Accelerator):
    """NVIDIA GPUs: ``devices`` is a count, ``-1`` for all, or the indices to use."""

    def setup_device(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise MisconfigurationError(f"Device should be GPU, got {device} instead.")
        torch.cuda.set_device(device)

    def get_device_stats(self, device: Any) -> dict[str, Any]:
        return torch.cuda.memory_stats(device)

    @staticmethod
    def parse_devices(devices: int | str | list[int]) -> list[int] | None:
        """The GPU indices to use; ``None`` for 0 or an empty list, which ask for none."""
        if devices in (0, "0", []):
            return None
        return resolve_devices("cuda", devices)

    @staticmethod
    def get_parallel_devices(devices: list[int]) -> list[torch.device]:
        return [torch.device("cuda", index) for index in devices]

    @staticmethod
    def auto_device_count() -> int:
        return torch.cuda.device_count()

    @staticmethod
    def is_available() -> bool:
        return torch.cuda.device_count() > 0

    @staticmethod
    def name() -> str:
        return "cuda"


class MPSAccelerator(Accelerator):
    """Apple silicon's GPU, one device."""

    def setup_device(self, device: torch.device) -> None:
        if device.type != "mps":
            raise MisconfigurationError(f"Device should be MPS, got {device} instead.")

    @staticmethod
    def parse_devices(devices: int | str | list[int]) -> list[int] | None:
        if devices in (0, "0", []):
            return None
        return resolve_devices("mps", devices)

    @staticmethod
    def get_parallel_devices(devices: int | str | list[int]) -> list[torch.device]:
        parsed = MPSAccelerator.parse_devices(devices) or []
        return [torch.device("mps", index) for index in range(len(parsed))]

    @staticmethod
    def auto_device_count() -> int:
        return 1

    @staticmethod
    def is_available() -> bool:
        return _mps_available()

    @staticmethod
    def name() -> str:
        return "mps"


class XLAAccelerator(Accelerator):
    """TPUs (and other XLA devices) through torch_xla, imported only when asked about."""

    @staticmethod
    def parse_devices(devices: int | str | list[int]) -> int | list[int]:
        indices = resolve_devices("xla", devices)
        return indices if isinstance(devices, (list, tuple)) else len(indices)

    @staticmethod
    def get_parallel_devices(devices: int | list[int]) -> list[torch.device]:
        indices = range(devices) if isinstance(devices, int) else devices
        return [torch.device("xla", index) for index in indices]

    @staticmethod
    def auto_device_count() -> int:
        return _device_count("xla") if _xla_available() else 0

    @staticmethod
    def is_available() -> bool:
        return _xla_available() and XLAAccelerator.auto_device_count() > 0

    @staticmethod
    def name() -> str:
        return "tpu"


def select_accelerator(flag: Any) -> tuple[Accelerator, str]:
    """The Trainer's ``accelerator`` flag as an ``Accelerator`` (the one given, or one made for the name), and the
    name of its device type ("cpu", "cuda", "mps" or "xla")."""
    name = resolve_accelerator(flag)
    if isinstance(flag, Accelerator):
        return flag, name
    return {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator, "xla": XLAAccelerator}[name](), name
