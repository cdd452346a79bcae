"""The process's global rank, for code that writes files but holds no Trainer (loggers, profilers)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

_Function = TypeVar("_Function", bound=Callable[..., Any])

# Set by torchrun, SLURM and LSF launchers, in the order Lightning reads them.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """The rank the launcher gave this process; 0 when it was started alone."""
    for variable in _RANK_VARIABLES:
        value = os.environ.get(variable)
        if value is not None:
            return int(value)
    return 0


def rank_zero_only(function: _Function) -> _Function:
    """Run ``function`` on global rank 0 only; elsewhere it returns None, so one process writes each file."""

    @functools.wraps(function)
    def on_rank_zero(*args: Any, **kwargs: Any) -> Any:
        if global_rank() == 0:
            return function(*args, **kwargs)
        return None

    return on_rank_zero  # type: ignore[return-value]
