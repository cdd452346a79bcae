"""Numeric precision: how the forward runs (autocast or not), how the loss is scaled, how steps happen.

The order inside one optimizer step, for every precision:
    forward under ``forward_context()`` → ``scale_loss`` → backward → ``unscale_gradients`` → clip →
    ``optimizer_step`` (a scaler skips it on inf/nan) → scaler update.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from engineering.errors import MisconfigurationError
from engineering.optimization.optimizers import calls_closure_once
from research.nested import apply_to_collection

_ALIASES = {
    "32": "32-true", "32-true": "32-true",
    "64": "64-true", "64-true": "64-true",
    "16": "16-mixed", "16-mixed": "16-mixed",
    "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed",
    "16-true": "16-true", "bf16-true": "bf16-true",
}
PRECISIONS = sorted(set(_ALIASES.values()))

def normalize_precision(precision: Any) -> str:
    name = _ALIASES.get(str(precision)) if isinstance(precision, (int, str)) else None
    if name is None:
        raise MisconfigurationError(f"precision={precision!r} is not supported; choose one of {PRECISIONS}.")
    return name


class Precision:
    """Full precision in the parameters' own dtype (``32-true``); the base of the others."""

    name = "32-true"
    casts_input = False  # whether convert_input changes batches
    has_forward_context = False  # whether forward_context() does anything
    scales_loss = False  # whether scale_loss and unscale_gradients do anything
    _no_context = contextlib.nullcontext()

    def convert_module(self, module: nn.Module) -> nn.Module:
        return module

    def convert_input(self, batch: Any) -> Any:
        return batch

    def forward_context(self) -> contextlib.AbstractContextManager:
        return self._no_context

    def wrap_step(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """``step`` run under ``forward_context()``; where that does nothing, ``step`` itself (no cost per call)."""
        if not self.has_forward_context:
            return step

        def in_forward_context(*args: Any) -> Any:
            with self.forward_context():
                return step(*args)

        return in_forward_context

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None: ...

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any] | None,
                       **kwargs: Any) -> Any:
        """Run the closure (forward, backward, clipping), if any, and the step; return the closure's loss."""
        if closure is None:
            return optimizer.step(**kwargs)
        if calls_closure_once(optimizer):
            # These call the closure once, first thing in step(): calling it just before is the same computation,
            # without the grad-mode switch around it (a few µs a step). Others (LBFGS, custom ones) get it.
            loss = closure() if closure is not None else None
            optimizer.step(**kwargs)
            return loss
        return optimizer.step(closure=closure, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


class TruePrecision(Precision):
    """Parameters and floating inputs cast to one dtype: 64-true, 16-true, bf16-true."""

    casts_input = True
    has_forward_context = True

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name = name
        self.dtype = dtype

    def convert_module(self, module: nn.Module) -> nn.Module:
        return module.to(dtype=self.dtype)

    def convert_input(self, batch: Any) -> Any:
        return _cast_floating(batch, self.dtype)

    def forward_context(self) -> contextlib.AbstractContextManager:
        return _default_dtype(self.dtype)


class MixedPrecision(Precision):
    """Autocast forward; with fp16 on CUDA a GradScaler scales the loss and skips inf/nan steps."""

    has_forward_context = True

    def __init__(self, name: str, device_type: str, dtype: torch.dtype,
                 scaler: torch.amp.GradScaler | None = None) -> None:
        if scaler is not None and dtype is not torch.float16:
            raise MisconfigurationError(f"A GradScaler is for float16; {name} autocasts to {dtype} and needs none.")
        if scaler is None and dtype is torch.float16 and device_type == "cuda":
            scaler = torch.amp.GradScaler(device_type)
        self.name = name
        self.device_type = device_type
        self.dtype = dtype
        self.scaler = scaler
        self.scales_loss = scaler is not None
        self._unscaled: set[int] = set()

    def forward_context(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None and id(optimizer) not in self._unscaled:
            self.scaler.unscale_(optimizer)
            self._unscaled.add(id(optimizer))

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any] | None,
                       **kwargs: Any) -> Any:
        if self.scaler is None:
            return super().optimizer_step(optimizer, closure, **kwargs)
        # GradScaler cannot take a closure: run it (forward + backward) first, then step.
        loss = closure() if closure is not None else None
        if id(optimizer) not in self._unscaled:
            return loss  # no backward ran (training_step returned None): nothing to step or to learn from
        self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        self._unscaled.discard(id(optimizer))
        return loss

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.scaler is not None and state_dict:
            self.scaler.load_state_dict(state_dict)


def create_precision(name: str, device_type: str) -> Precision:
    """The precision plugin for a normalized precision name on a device type."""
    if name == "32-true":
        return Precision()
    if name == "64-true":
        return TruePrecision(name, torch.float64)
    if name == "16-true":
        return TruePrecision(name, torch.float16)
    if name == "bf16-true":
        return TruePrecision(name, torch.bfloat16)
    if name == "bf16-mixed":
        return MixedPrecision(name, _autocast_device(device_type), torch.bfloat16)
    if device_type != "cuda":
        warnings.warn(
            "precision='16-mixed' on CPU autocasts to bfloat16, the half type CPUs support well; "
            "there is no loss scaling. Use 'bf16-mixed' to say so explicitly.",
            stacklevel=4,  # the user's Trainer(...) line
        )
        return MixedPrecision(name, _autocast_device(device_type), torch.bfloat16)
    return MixedPrecision(name, "cuda", torch.float16)


def _autocast_device(device_type: str) -> str:
    return device_type if device_type in ("cuda", "cpu", "mps", "xla") else "cpu"


def _cast_floating(batch: Any, dtype: torch.dtype) -> Any:
    """Every floating tensor in ``batch`` (nested collections, namedtuples and dataclasses too) as ``dtype``."""
    return apply_to_collection(batch, torch.Tensor, lambda t: t.to(dtype) if t.is_floating_point() else t)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # tensors created inside forward get the run's dtype too
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
