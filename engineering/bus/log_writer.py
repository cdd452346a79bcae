"""Loggers write on a background thread, so a slow disk or file system never holds up a training step.

The run's hook runner hands every ``log_metrics`` and ``log_hyperparams`` call meant for a logger that
``writes_in_background`` (TensorBoard, CSV) to one ``LogWriter``: a queue of at most ``CAPACITY`` calls,
delivered in order by one thread, in rounds every ``ROUND_SECONDS``; the first call at once, so that a
logger's setup (TensorBoard's import) overlaps no more of training than it must. The training thread waits only
when the queue is full, so a logger that stalls slows training by no more than that bound, and loses nothing:
every value is delivered once it catches up. The loggers get plain floats.

The queue is drained (every call delivered) after each validation, before loggers are finalized at the end
of a run (successful or not), and when the run's subscribers are disconnected. A logger's error is raised
on the training thread at the next call or drain; the calls behind it are still delivered.

When every receiver of ``log_metrics`` is such a queue, the values travel as ``PendingMetrics``: on a CUDA device
their copy to the host starts on the training thread, which does not wait for it; the writer thread does. So
loggers in the background cost the training thread no device synchronisation. Where any other receiver listens
(a logger on the training thread, as in Lightning, or a user's subscriber), the values are floats before the send.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

CAPACITY = 1024  # calls; one per log_every_n_steps steps, so a stalled disk may lag far behind before it costs

# Device types whose values are read where they are, one by one: a read is no device synchronisation there, and
# costs less than stacking the values into one tensor first (0.3 against 7 µs for one value).
READ_ONE_BY_ONE = ("cpu",)

_STOP = object()
ROUND_SECONDS = 0.1  # the writer delivers what is queued this often, or at once when drained or full
_POLL_SECONDS = 0.0002  # while a transfer to the host is still running; the sleep lets the training thread run


class PendingMetrics(Mapping[str, float]):
    """Logged tensors on their way to the host as floats, in the order given, then ``extra`` where not logged.

    Values on a CUDA device are copied with one non-blocking transfer per device, started here; whoever reads
    a value first waits for it. Values on the CPU are read at once, one by one; on another device, as one tensor
    per device, at once. Float64 values stay exact; the rest are read as float32.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], extra: dict[str, float]) -> None:
        self._extra = extra
        self._values: dict[str, float] | None = None
        self._read: dict[str, float] = {}  # the values on the CPU, read at once
        self._transfers: list[tuple[list[str], torch.Tensor, Any]] = []  # (keys, host tensor, ready event)
        by_device: dict[torch.device, list[str]] = {}
        for key, tensor in tensors.items():
            by_device.setdefault(tensor.device, []).append(key)
        for device, keys in by_device.items():
            values = [tensors[key] for key in keys]
            dtype = torch.float64 if any(value.dtype is torch.float64 for value in values) else torch.float32
            if device.type in READ_ONE_BY_ONE:
                self._read.update(zip(keys, [_read_as(value, dtype) for value in values]))
                continue
            stacked = torch.stack([value.detach().reshape(()).to(dtype) for value in values])
            ready = None
            if device.type == "cuda":
                stacked = stacked.to("cpu", non_blocking=True)  # into pinned memory: the device is not waited for
                ready = torch.cuda.Event()
                ready.record()
            self._transfers.append((keys, stacked, ready))
        self._order = list(tensors)
        if not any(ready is not None for _, _, ready in self._transfers):
            self._resolve()

    def _resolve(self) -> dict[str, float]:
        if self._values is None:
            floats = self._read
            for keys, host, ready in self._transfers:
                while ready is not None and not ready.query():  # a poll, not a device synchronisation
                    time.sleep(_POLL_SECONDS)
                floats.update(zip(keys, host.tolist()))
            values = {key: floats[key] for key in self._order}
            for key, value in self._extra.items():
                values.setdefault(key, value)
            self._values = values
        return self._values

    def __getitem__(self, key: str) -> float:
        return self._resolve()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolve())

    def __len__(self) -> int:
        return len(self._resolve())

    def __repr__(self) -> str:
        return f"PendingMetrics({self._resolve()!r})"


def _read_as(value: torch.Tensor, dtype: torch.dtype) -> float:
    """A CPU value as a float, as if converted to ``dtype`` first: a float32 or float64 value is read as it is,
    which gives the same float."""
    return value.item() if value.dtype in (torch.float32, torch.float64) else value.detach().to(dtype).item()


def _plain(argument: Any) -> Any:
    """What a logger receives: a plain dict of floats where the bus carried ``PendingMetrics``."""
    return dict(argument) if isinstance(argument, PendingMetrics) else argument


def direct_receiver(method: Callable[..., Any]) -> Callable[..., Any]:
    """A bus receiver that calls ``method(*payload)`` on the training thread (the other loggers, as Lightning)."""

    def receive(trainer: Any, pl_module: Any, **payload: Any) -> Any:
        return method(*map(_plain, payload.values()))

    receive.__qualname__ = getattr(method, "__qualname__", repr(method))
    return receive


class LogWriter:
    """One background thread delivering logger calls in the order they were made."""

    def __init__(self) -> None:
        self._calls: queue.Queue[Any] = queue.Queue(maxsize=CAPACITY)
        self._wake = threading.Event()  # set by drain, close and a full queue
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def receiver(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """A bus receiver that queues ``method(*payload)`` instead of calling it."""

        def receive(trainer: Any, pl_module: Any, **payload: Any) -> None:
            self.put(method, *payload.values())

        receive.takes_pending_metrics = True  # type: ignore[attr-defined]
        return receive

    def put(self, method: Callable[..., Any], *arguments: Any) -> None:
        self._raise_error()
        if self._calls.full():
            self._wake.set()  # a logger that fell behind: deliver now, not at the next round
        self._calls.put((method, arguments))  # blocks while the queue is full: the bound on a stalled logger
        if self._thread is None:  # started after its first call is queued, which it delivers at once
            self._thread = threading.Thread(target=self._deliver, name="tribus-log-writer", daemon=True)
            self._thread.start()

    def drain(self) -> None:
        """Return once every queued call has been delivered; raise the error a logger met, if any."""
        if self._thread is not None:
            self._wake.set()
            self._calls.join()
        self._raise_error()

    def close(self) -> None:
        """Deliver what is queued, then end the thread."""
        if self._thread is not None:
            self._calls.put(_STOP)
            self._wake.set()
            self._thread.join()
            self._thread = None
        self._raise_error()

    def _deliver(self) -> None:
        # Rounds, not a wake-up per call: each wake-up takes the interpreter lock from the training thread, and
        # on small steps a wake-up per flush cost more than the writing (bench/overhead.py, defaults).
        while True:
            while not self._calls.empty():  # the first call, which starts the thread, is delivered at once
                call = self._calls.get()
                try:
                    if call is _STOP:
                        return
                    method, arguments = call
                    method(*map(_plain, arguments))
                except BaseException as error:  # reported on the training thread, which can stop the run
                    self._error = self._error or error
                finally:
                    self._calls.task_done()
            self._wake.wait(ROUND_SECONDS)
            self._wake.clear()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error
