"""EventTrace: every event a Trainer sends, one JSON line each. ``python -m auxiliary.trace FILE`` summarises one.

A line looks like::

    {"name": "on_train_batch_end", "time": 1718000000.123, "epoch": 0, "global_step": 3, "batch_idx": 2, "rank": 0}

``time`` is Unix time in seconds; ``batch_idx`` is the event's own (validation batches count their own),
else the position in the training epoch. Some events add what they carry: ``stage`` (setup, teardown),
``dataloader_idx``, ``step`` and ``metrics`` (log_metrics), ``exception`` (on_exception); and
``"should_stop": true`` appears on every event from the first one that saw a stop requested.

A record is completed when the next event begins (or at teardown): its ``time`` is when that event's
callbacks, the module's hook and the monitoring callbacks had finished, and ``should_stop`` includes what
they decided. Its ``epoch``, ``global_step`` and ``batch_idx`` are as the event found them.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any, TextIO

from engineering import Callback, events

# Payload entries that are small, plain and worth grepping for; batches, outputs and optimizers are not.
_PLAIN_PAYLOAD = ("stage", "dataloader_idx", "step", "metrics")


class EventTrace(Callback):
    """Record every event the Trainer sends, in order, to ``path`` as JSON lines.

    Put ``{rank}`` in ``path`` when several processes train, so each writes its own file. The file is
    rewritten by this callback's first run and appended to by later ones (fit, then test, …).
    ``python -m auxiliary.trace FILE`` summarises a trace.

    Args:
        path: The JSON-lines file; ``{rank}`` in it becomes the process's global rank.

    Example:
        ```python
        trainer = Trainer(callbacks=[EventTrace("trace-{rank}.jsonl")])
        ```
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._file: TextIO | None = None
        self._connections: list[tuple[events.Event, Callable[..., None]]] = []
        self._runs = 0
        self._pending: tuple[dict[str, Any], Any] | None = None  # the last event's record, and its trainer

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._stop()  # a previous run whose teardown never reached us must not leave receivers behind
        path = self.path.format(rank=trainer.global_rank)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a" if self._runs else "w")
        self._runs += 1
        self._record(trainer, "setup", {"stage": stage})
        # Every other event reaches a raw receiver connected to this Trainer only. setup and teardown
        # are this callback's own hooks: the connections are made and dropped there.
        for name, event in events.bus.items():
            if event is not events.setup and event is not events.teardown:
                receiver = self._receiver_for(name)
                event.connect(receiver, sender=trainer, weak=False)
                self._connections.append((event, receiver))

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._record(trainer, "teardown", {"stage": stage})
        self._stop()

    def _stop(self) -> None:
        self._complete_pending()
        for event, receiver in self._connections:
            event.disconnect(receiver)  # from every sender: only that makes blinker forget the receiver
        self._connections.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _receiver_for(self, name: str) -> Callable[..., None]:
        def record(trainer: Any, pl_module: Any = None, **payload: Any) -> None:
            self._record(trainer, name, payload)

        return record

    def _record(self, trainer: Any, name: str, payload: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._complete_pending()
        progress = trainer.progress
        line: dict[str, Any] = {
            "name": name,
            "time": None,  # set when the record is completed
            "epoch": progress.epoch,
            "global_step": progress.global_step,
            "batch_idx": payload.get("batch_idx", progress.batch_idx),
            "rank": trainer.global_rank,
        }
        line.update((key, payload[key]) for key in _PLAIN_PAYLOAD if key in payload)
        if "exception" in payload:
            line["exception"] = repr(payload["exception"])
        self._pending = (line, trainer)
        if name == "on_exception":
            self._complete_pending()
            self._file.flush()  # the process may not live to close the file

    def _complete_pending(self) -> None:
        """Write the last event's record, now that everyone who hears that event has."""
        if self._pending is None or self._file is None:
            return
        line, trainer = self._pending
        self._pending = None
        line["time"] = time.time()
        if trainer.progress.should_stop:
            line["should_stop"] = True
        self._file.write(json.dumps(line) + "\n")


def read_trace(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a trace file, in order."""
    records = []
    with open(path) as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{os.fspath(path)}:{number} is not a JSON line ({error}); is it an EventTrace file?") from None
    return records


def summarize(records: list[dict[str, Any]], last: int = 10) -> str:
    """Event counts, the time since the previous event for each kind, where a stop was first requested, the
    last events."""
    if not records:
        return "no events"
    gaps: dict[str, list[float]] = {}  # per event name: seconds since the previous event of the same rank
    previous_time: dict[int, float] = {}
    for record in records:
        rank = record.get("rank", 0)
        gap = record["time"] - previous_time.get(rank, record["time"])
        previous_time[rank] = record["time"]
        gaps.setdefault(record["name"], []).append(gap)
    span = records[-1]["time"] - records[0]["time"]
    ranks = sorted({record.get("rank", 0) for record in records})
    lines = [f"{len(records)} events over {span:.3f} s, rank(s) {', '.join(map(str, ranks))}, "
             f"last at epoch {records[-1]['epoch']}, global_step {records[-1]['global_step']}", ""]

    width = max(len(name) for name in gaps)
    lines.append(f"{'event':<{width}}  {'count':>7}  {'ms since previous event: mean':>29}  {'max':>9}  {'total':>10}")
    for name, since in gaps.items():  # in order of first appearance, which is the hook order
        lines.append(f"{name:<{width}}  {len(since):>7}  {statistics.fmean(since) * 1e3:>29.3f}  "
                     f"{max(since) * 1e3:>9.3f}  {sum(since) * 1e3:>10.3f}")

    stop = next((record for record in records if record.get("should_stop")), None)
    if stop is not None:
        lines += ["", f"should_stop first seen at {stop['name']}: epoch {stop['epoch']}, "
                      f"global_step {stop['global_step']}, batch_idx {stop['batch_idx']}"]
    failure = next((record for record in records if "exception" in record), None)
    if failure is not None:
        lines += ["", f"exception at epoch {failure['epoch']}, global_step {failure['global_step']}: {failure['exception']}"]

    lines += ["", f"last {min(last, len(records))} events:"]
    for record in records[-last:]:
        extras = {key: value for key, value in record.items()
                  if key not in ("name", "time", "epoch", "global_step", "batch_idx", "rank")}
        shown = " ".join(f"{key}={json.dumps(value)}" for key, value in extras.items())
        lines.append(f"  {record['name']:<{width}}  epoch {record['epoch']}  global_step {record['global_step']}  "
                     f"batch_idx {record['batch_idx']}  {shown}".rstrip())
    return "\n".join(lines)
