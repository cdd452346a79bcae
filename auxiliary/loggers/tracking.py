"""What the experiment-tracker loggers share: the optional import, a courier that keeps a failing tracker from
stopping training, hyperparameter flattening, and the choice of checkpoints to upload."""

from __future__ import annotations

import argparse
import collections
import importlib
import importlib.util
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch


def require(module: str, extra: str, logger: str) -> None:
    """Refuse to build ``logger`` when ``module`` is not installed, naming the extra that brings it."""
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f"{logger} needs the {module!r} package, which is not installed: pip install 'tribus[{extra}]'"
        )


def load(module: str) -> ModuleType:
    """Import a tracker library on first use, never with tribus."""
    return importlib.import_module(module)


class AbsentExperiment:
    """What ``experiment`` gives on ranks other than 0: every attribute is a call that does nothing."""

    def __getattr__(self, name: str) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> AbsentExperiment:
        return self

    def __getitem__(self, key: Any) -> AbsentExperiment:
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def retry_always(error: BaseException) -> bool:
    """The default: no error is permanent (a module-level function, so a courier pickles)."""
    return False


class Courier:
    """Delivers a tracker's calls in order from a background thread, so a slow or lost tracker never stalls or
    crashes training.

    A call that raises stays first in line and is tried again after a delay that doubles up to
    ``max_delay_s``; the calls sent meanwhile wait behind it in memory. The failure is reported as a warning,
    naming the tracker, from the training thread at its next ``send`` (warnings from a background thread are
    easy to miss). An error ``permanent`` says retrying cannot fix (a rejected value) drops that call alone,
    with a warning.
    """

    def __init__(self, tracker: str, permanent: Callable[[BaseException], bool] = retry_always,
                 first_delay_s: float = 0.5, max_delay_s: float = 30.0) -> None:
        self.tracker = tracker
        self._permanent = permanent
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._pending: collections.deque[tuple[str, Callable[[], Any]]] = collections.deque()
        self._condition = threading.Condition()
        self._busy = False
        self._failure: str | None = None  # the current streak's first error, until it is reported
        self._failing = False
        self._dropped: list[str] = []
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        """A courier travels to a spawned process empty: its thread, lock and queue stay with the sender."""
        state = self.__dict__.copy()
        state.update(_pending=collections.deque(), _condition=None, _busy=False, _failure=None, _failing=False,
                     _dropped=[], _thread=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._condition = threading.Condition()

    def send(self, what: str, call: Callable[[], Any]) -> None:
        """Queue ``call`` (described by ``what``, e.g. "log metrics at step 3") for delivery."""
        self._report()
        with self._condition:
            self._pending.append((what, call))
            self._condition.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver, name=f"tribus-{self.tracker}", daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every queued call to be delivered; True when none is left."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._condition.wait(left)
            delivered = not self._pending
        self._report()
        return delivered

    def close(self, timeout_s: float) -> None:
        """Deliver what is queued, waiting up to ``timeout_s``; warn about what could not be delivered."""
        delivered = self.flush(timeout_s)
        with self._condition:
            # A worker stuck in a call is left behind: it stops as soon as the call returns.
            self._thread, self._busy, self._failing = None, False, False
            undelivered = [what for what, _ in self._pending]
            self._pending.clear()
            self._condition.notify_all()
        if not delivered:
            warnings.warn(
                f"{self.tracker}: {len(undelivered)} calls were not delivered within {timeout_s:g} s of the run's "
                f"end and are lost ({', '.join(undelivered[:3])}{', ...' if len(undelivered) > 3 else ''}). "
                f"Check that the tracker is reachable.", RuntimeWarning, stacklevel=2,
            )

    def _report(self) -> None:
        with self._condition:
            failure, self._failure = self._failure, None
            dropped, self._dropped = self._dropped, []
            waiting = len(self._pending)
        if failure is not None:
            warnings.warn(
                f"{self.tracker}: {failure}. Training goes on; this call and the {max(waiting - 1, 0)} sent after "
                f"it wait in memory and are retried with backoff (up to every {self._max_delay_s:g} s).",
                RuntimeWarning, stacklevel=3,
            )
        for what in dropped:
            warnings.warn(f"{self.tracker}: {what}; the tracker refused it, so it was dropped.",
                          RuntimeWarning, stacklevel=3)

    def _deliver(self) -> None:
        delay = self._first_delay_s
        while True:
            with self._condition:
                while not self._pending and self._owns_queue():
                    self._condition.wait()
                if not self._owns_queue():
                    return
                what, call = self._pending[0]
                self._busy = True
            try:
                call()
            except Exception as error:  # anything the tracker raises must not reach training
                with self._condition:
                    if not self._owns_queue():
                        return
                    self._busy = False
                    if self._permanent(error):
                        self._pending.popleft()
                        self._dropped.append(f"{what} failed: {error}")
                        self._condition.notify_all()
                        continue
                    if not self._failing:
                        self._failing = True
                        self._failure = f"{what} failed: {type(error).__name__}: {error}"
                    self._condition.notify_all()
                    self._condition.wait(delay)  # close() wakes it early
                delay = min(delay * 2, self._max_delay_s)
                continue
            with self._condition:
                if not self._owns_queue():
                    return
                self._pending.popleft()
                self._busy = False
                self._failing = False
                self._condition.notify_all()
            delay = self._first_delay_s

    def _owns_queue(self) -> bool:
        """False for a worker that close() left behind; called holding the condition."""
        return self._thread is threading.current_thread()


def as_dict(params: Mapping[str, Any] | argparse.Namespace) -> dict[str, Any]:
    """Hyperparameters as a dict, whether they came as a mapping or parsed command-line arguments."""
    return dict(vars(params)) if isinstance(params, argparse.Namespace) else dict(params)


def flatten(params: Mapping[str, Any], separator: str = "/", prefix: str = "") -> dict[str, Any]:
    """Nested hyperparameters as ``{"optimizer/lr": 0.1}``; namespaces count as nested."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, argparse.Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, separator, f"{name}{separator}"))
        else:
            flat[name] = value
    return flat


def plain(value: Any) -> Any:
    """A value a tracker can store: numbers, strings, booleans and lists of them; anything else as str."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    return str(value)


def with_prefix(metrics: Mapping[str, float], prefix: str, separator: str) -> dict[str, float]:
    return {f"{prefix}{separator}{key}": value for key, value in metrics.items()} if prefix else dict(metrics)


def checkpoints_to_upload(checkpoint_callback: Any, uploaded: dict[str, float]) -> list[tuple[str, Any, bool]]:
    """(path, score, is_best) of the callback's checkpoint files not uploaded since they were last written.

    ``uploaded`` maps a path to the modification time it had when it was uploaded; the caller updates it.
    """
    scores: dict[str, Any] = {}
    if checkpoint_callback.last_model_path:
        scores[checkpoint_callback.last_model_path] = checkpoint_callback.current_score
    if checkpoint_callback.best_model_path:
        scores[checkpoint_callback.best_model_path] = checkpoint_callback.best_model_score
    scores.update(checkpoint_callback.best_k_models)
    found = sorted((Path(path).stat().st_mtime, path) for path in scores if path and Path(path).is_file())
    best = checkpoint_callback.best_model_path
    return [(path, _number(scores[path]), path == best) for mtime, path in found
            if uploaded.get(path, -1.0) < mtime]


def checkpoint_metadata(checkpoint_callback: Any, path: str, score: Any) -> dict[str, Any]:
    """What is stored beside an uploaded checkpoint: its score, its file name and how it was chosen."""
    settings = ("monitor", "mode", "save_last", "save_top_k", "save_weights_only")
    return {"score": score, "original_filename": Path(path).name,
            "ModelCheckpoint": {name: getattr(checkpoint_callback, name) for name in settings}}


def _number(score: Any) -> Any:
    return score.item() if isinstance(score, torch.Tensor) else score
