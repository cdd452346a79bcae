"""The profiler interface the loops call. Real profilers live in ``auxiliary.profilers``.

With no profiler, ``profile(action)`` returns one shared null context and ``timed(action, function)``
returns ``function`` itself: nothing is timed, and the hot path pays nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any


class Profiler:
    """Time named actions; subclasses implement ``start``/``stop`` and ``summary``."""

    def __init__(self, dirpath: str | None = None, filename: str | None = None) -> None:
        self.dirpath = dirpath
        self.filename = filename

    def start(self, action: str) -> None: ...

    def stop(self, action: str) -> None: ...

    @contextlib.contextmanager
    def profile(self, action: str):
        self.start(action)
        try:
            yield
        finally:
            self.stop(action)

    def timed(self, action: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, each call timed as ``action``: a loop step, or a bus receiver under its own name."""

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            with self.profile(action):
                return function(*args, **kwargs)

        return timed_call

    def setup(self, stage: str, log_dir: str | None) -> None: ...

    def summary(self) -> str:
        return ""

    def describe(self) -> None: ...

    def teardown(self, stage: str) -> None: ...


class PassThroughProfiler(Profiler):
    """Profiling off: no timing, no wrapping."""

    _null = contextlib.nullcontext()

    def profile(self, action: str) -> contextlib.AbstractContextManager:  # type: ignore[override]
        return self._null

    def timed(self, action: str, function: Callable[..., Any]) -> Callable[..., Any]:
        return function
