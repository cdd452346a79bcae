"""The profiler interface the loops call. Real profilers live in ``auxiliary.profilers``.

With no profiler, ``profile(action)`` returns one shared null context: nothing is timed.
"""

from __future__ import annotations

import contextlib
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

    def wrap_receiver(self, name: str, receiver: Any) -> Any:
        """Time a bus receiver under its own name, so a slow subscriber shows up in the report."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.profile(name):
                return receiver(*args, **kwargs)

        return timed

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

    def wrap_receiver(self, name: str, receiver: Any) -> Any:
        return receiver
