"""Loggers write on a background thread, so a slow disk or file system never holds up a training step.

The run's hook runner hands every ``log_metrics`` and ``log_hyperparams`` call meant for a logger that
``writes_in_background`` (TensorBoard, CSV) to one ``LogWriter``: a queue of at most ``CAPACITY`` calls,
delivered in order by one thread. The training thread waits only when the queue is full, so a logger that
stalls slows training by no more than that bound, and loses nothing: every value is delivered once it catches
up. The values are plain floats by then.

The queue is drained (every call delivered) after each validation, before loggers are finalized at the end
of a run (successful or not), and when the run's subscribers are disconnected. A logger's error is raised
on the training thread at the next call or drain; the calls behind it are still delivered.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

CAPACITY = 1024  # calls; one per log_every_n_steps steps, so a stalled disk may lag far behind before it costs

_STOP = object()


def direct_receiver(method: Callable[..., Any]) -> Callable[..., Any]:
    """A bus receiver that calls ``method(*payload)`` on the training thread (the other loggers, as Lightning)."""

    def receive(trainer: Any, pl_module: Any, **payload: Any) -> Any:
        return method(*payload.values())

    receive.__qualname__ = getattr(method, "__qualname__", repr(method))
    return receive


class LogWriter:
    """One background thread delivering logger calls in the order they were made."""

    def __init__(self) -> None:
        self._calls: queue.Queue[Any] = queue.Queue(maxsize=CAPACITY)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def receiver(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """A bus receiver that queues ``method(*payload)`` instead of calling it."""

        def receive(trainer: Any, pl_module: Any, **payload: Any) -> None:
            self.put(method, *payload.values())

        return receive

    def put(self, method: Callable[..., Any], *arguments: Any) -> None:
        self._raise_error()
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name="tribus-log-writer", daemon=True)
            self._thread.start()
        self._calls.put((method, arguments))  # blocks while the queue is full: the bound on a stalled logger

    def drain(self) -> None:
        """Return once every queued call has been delivered; raise the error a logger met, if any."""
        if self._thread is not None:
            self._calls.join()
        self._raise_error()

    def close(self) -> None:
        """Deliver what is queued, then end the thread."""
        if self._thread is not None:
            self._calls.put(_STOP)
            self._thread.join()
            self._thread = None
        self._raise_error()

    def _deliver(self) -> None:
        while True:
            call = self._calls.get()
            try:
                if call is _STOP:
                    return
                method, arguments = call
                method(*arguments)
            except BaseException as error:  # reported on the training thread, which can stop the run
                self._error = self._error or error
            finally:
                self._calls.task_done()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error
