"""Helpers Lightning programs import from ``lightning.pytorch.utilities``, under the same names.

``rank_zero_info`` and ``rank_zero_debug`` write to the ``engineering`` logger; when the program has configured
no logging by the first such message, that logger gets a console handler at INFO level (Lightning sets one up
for its own logger), so the messages show as they did under Lightning.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import torch

from engineering.data.combined import CombinedLoader
from research.hparams import AttributeDict
from research.nested import move_to_device

log = logging.getLogger("engineering")


def _console_log() -> logging.Logger:
    if not log.handlers and not logging.getLogger().hasHandlers():
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)
        log.propagate = False
    return log

# Set by torchrun, SLURM and LSF launchers (and by tribus for the processes it starts), in Lightning's order.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _launcher_rank() -> int:
    for variable in _RANK_VARIABLES:
        value = os.environ.get(variable)
        if value is not None:
            return int(value)
    return 0


def rank_zero_only(function: Callable[..., Any], default: Any = None) -> Callable[..., Any]:
    """Run ``function`` on global rank 0 only; other ranks get ``default``.

    The rank is ``rank_zero_only.rank`` when set (as in Lightning, a program may set it), else the one the
    launcher gave this process."""

    @functools.wraps(function)
    def on_rank_zero(*args: Any, **kwargs: Any) -> Any:
        rank = rank_zero_only.rank
        if (_launcher_rank() if rank is None else rank) == 0:
            return function(*args, **kwargs)
        return default

    return on_rank_zero


rank_zero_only.rank = None  # type: ignore[attr-defined]


@rank_zero_only
def rank_zero_info(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """``logging.info`` on the ``engineering`` logger, from global rank 0 only."""
    _console_log().info(*args, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_debug(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """``logging.debug`` on the ``engineering`` logger, from global rank 0 only."""
    _console_log().debug(*args, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_warn(message: str | Warning, stacklevel: int = 4, **kwargs: Any) -> None:
    """``warnings.warn``, from global rank 0 only."""
    warnings.warn(message, stacklevel=stacklevel, **kwargs)


def move_data_to_device(batch: Any, device: torch.device | str | int) -> Any:
    """Every tensor in ``batch`` (nested lists, tuples, dicts, dataclasses) moved to ``device``."""
    return move_to_device(batch, torch.device(device) if not isinstance(device, torch.device) else device)


def grad_norm(module: torch.nn.Module, norm_type: float | int | str, group_separator: str = "/") -> dict[str, torch.Tensor]:
    """The ``norm_type``-norm of each parameter's gradient, keyed ``grad_{p}_norm/{name}``, and of all of them
    as one vector, ``grad_{p}_norm_total``; for ``self.log_dict`` in ``on_before_optimizer_step``."""
    norm_type = float(norm_type)
    if norm_type <= 0:
        raise ValueError(f"`norm_type` must be a positive number or 'inf' (infinity norm). Got {norm_type}")
    norms = {
        f"grad_{norm_type}_norm{group_separator}{name}": parameter.grad.detach().norm(norm_type)
        for name, parameter in module.named_parameters()
        if parameter.grad is not None
    }
    if norms:
        norms[f"grad_{norm_type}_norm_total"] = torch.stack(list(norms.values())).norm(norm_type)
    return norms


def measure_flops(
    model: torch.nn.Module, forward_fn: Callable[[], torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """The FLOPs of ``forward_fn()`` (and of the loss and backward when ``loss_fn`` is given), counted by
    PyTorch's ``FlopCounterMode``; build the model on the meta device to count without computing."""
    from torch.utils.flop_counter import FlopCounterMode  # only programs that count FLOPs pay for it

    counter = FlopCounterMode(display=False)
    with counter:
        if loss_fn is None:
            forward_fn()
        else:
            loss_fn(forward_fn()).backward()
    return counter.get_total_flops()


def cli_lightning_logo() -> None:
    """Lightning's examples print its logo when they start; tribus prints its name, so a ported script runs as is."""
    print("tribus: research · engineering · auxiliary")


def is_picklable(value: object) -> bool:
    """Whether ``pickle.dumps(value)`` succeeds."""
    try:
        pickle.dumps(value)
    except (pickle.PickleError, AttributeError, RuntimeError, TypeError):
        return False
    return True


__all__ = [
    "AttributeDict", "CombinedLoader", "cli_lightning_logo", "grad_norm", "is_picklable", "measure_flops", "move_data_to_device", "rank_zero_debug",
    "rank_zero_info", "rank_zero_only", "rank_zero_warn",
]
