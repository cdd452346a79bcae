"""NeptuneLogger: metrics, parameters and checkpoints to a Neptune run (neptune 1.x client), under one namespace.

Lightning 2.6 dropped its NeptuneLogger (it raises, Neptune's service having been sunset); this one keeps the
arguments and layout of Lightning 2.5's, for teams that run Neptune's client offline or against their own
installation.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from auxiliary.loggers.tracking import (AbsentExperiment, Courier, as_dict, checkpoints_to_upload, load, require,
                                        with_prefix)
from auxiliary.ranks import global_rank, rank_zero_only
from engineering import Logger

OFFLINE = "OFFLINE"  # the version of a run Neptune's server has not numbered, as in Lightning


class NeptuneLogger(Logger):
    """Logs to ``run`` (a neptune Run you created) or to ``neptune.init_run(project, api_token=api_key, name,
    **neptune_run_kwargs)``, everything under the namespace ``prefix``.

    ``mode="offline"`` keeps the run in ``.neptune/offline`` for ``neptune sync``; ``mode="debug"`` keeps it in
    memory; neither needs a network. ``with_id="PRJ-12"`` continues a run on the server; offline, pass the same
    ``run`` object to continue it (Neptune cannot reopen an offline run by id). Metrics go to
    ``<prefix>/<name>`` series, hyperparameters to ``<prefix>/hyperparams``, and with ``log_model_checkpoints``
    the checkpoint files to ``<prefix>/model/checkpoints/``. Calls run on a background thread: a failing
    Neptune gives a warning and a retry, never a crashed training run. Only global rank 0 talks to Neptune.
    """

    LOGGER_JOIN_CHAR = "/"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        project: str | None = None,
        name: str | None = None,
        run: Any = None,
        log_model_checkpoints: bool | None = True,
        prefix: str = "training",
        delivery_timeout_s: float = 60.0,
        **neptune_run_kwargs: Any,
    ) -> None:
        require("neptune", "neptune", "NeptuneLogger")
        if run is not None and (api_key or project or name or neptune_run_kwargs):
            raise ValueError("NeptuneLogger: a run you pass was already set up; pass either run=... or the "
                             "arguments for a new one (api_key, project, name, mode, ...), not both.")
        self._run = run
        self._opens_its_run = run is None
        self._init_options = {"api_token": api_key, "project": project, "name": name, **neptune_run_kwargs}
        self._log_model_checkpoints = log_model_checkpoints
        self._prefix = prefix
        self.delivery_timeout_s = delivery_timeout_s
        self._courier = Courier("Neptune")
        self._uploaded: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a spawned process) without the run. A run this logger opened on a server is reopened by
        its id; an offline or debug run cannot be, nor a run passed in: the copy starts a new one."""
        state = {**self.__dict__, "_run": None}
        on_server = self._init_options.get("mode") not in ("offline", "debug", "read-only")
        if self._run is not None and self._opens_its_run and on_server:
            state["_init_options"] = {**self._init_options, "with_id": self._run["sys/id"].fetch()}
        return state

    @property
    def run(self) -> Any:
        """The neptune Run; the first access starts it (and imports neptune). On other ranks, a no-op."""
        if global_rank() != 0:
            return AbsentExperiment()
        if self._run is None:
            neptune = load("neptune")
            self._run = neptune.init_run(**{key: value for key, value in self._init_options.items()
                                            if value is not None})
            self._run["source_code/integrations/tribus"] = "tribus"
        return self._run

    @property
    def experiment(self) -> Any:
        return self.run

    @property
    def name(self) -> str:
        """The run's name; offline, where nothing can be fetched, the name given (else ``"offline-name"``)."""
        run = self.run
        if run.exists("sys/id"):
            return run["sys/name"].fetch()
        return self._init_options["name"] or "offline-name"

    @property
    def version(self) -> str:
        """The run's id on the server (``PRJ-12``); ``"OFFLINE"`` for a run kept offline or in memory."""
        run = self.run
        return run["sys/id"].fetch() if run.exists("sys/id") else OFFLINE

    @property
    def save_dir(self) -> str:
        """Where Neptune keeps runs before they are synchronised: ``.neptune`` in the working directory."""
        return os.path.join(os.getcwd(), ".neptune")

    def _path(self, *parts: str) -> str:
        return self.LOGGER_JOIN_CHAR.join(part for part in (self._prefix, *parts) if part)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace) -> None:
        """Stored as a namespace; values Neptune cannot hold (lists, objects) are stored as their string."""
        from neptune.utils import stringify_unsupported

        values = stringify_unsupported(as_dict(params))
        run, path = self.run, self._path("hyperparams")
        self._courier.send("log_hyperparams", functools.partial(_assign, run, path, values))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        series = with_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        run = self.run

        def append() -> None:
            for key, value in series.items():
                run[key].append(value, step=step)

        self._courier.send(f"log_metrics at step {step}", append)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Upload the new checkpoint files under ``<prefix>/model/checkpoints/<file name>``, drop the ones the
        callback no longer keeps, and record ``best_model_path`` and ``best_model_score``."""
        if not self._log_model_checkpoints:
            return
        run, directory = self.run, Path(checkpoint_callback.dirpath)

        def key(path: str) -> str:
            return self._path("model", "checkpoints", Path(path).relative_to(directory).with_suffix("").as_posix())

        for path, _, _ in checkpoints_to_upload(checkpoint_callback, self._uploaded):
            self._uploaded[path] = Path(path).stat().st_mtime
            self._courier.send(f"upload of {path}", functools.partial(_upload, run, key(path), path))
        # The callback deletes a file it no longer keeps right after this call: its books already say which.
        kept = {checkpoint_callback.last_model_path, checkpoint_callback.best_model_path,
                *checkpoint_callback.best_k_models}
        for path in [path for path in self._uploaded if Path(path).parent == directory and path not in kept]:
            del self._uploaded[path]
            self._courier.send(f"removal of {key(path)}", functools.partial(run.pop, key(path)))
        if checkpoint_callback.best_model_path:
            self._courier.send("best_model_path", functools.partial(
                _assign, run, self._path("model", "best_model_path"), checkpoint_callback.best_model_path))
        if checkpoint_callback.best_model_score is not None:
            self._courier.send("best_model_score", functools.partial(
                _assign, run, self._path("model", "best_model_score"), float(checkpoint_callback.best_model_score)))

    @rank_zero_only
    def save(self) -> None:
        """Wait up to ``delivery_timeout_s`` until Neptune has everything logged so far."""
        self._courier.flush(self.delivery_timeout_s)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Record ``<prefix>/status`` and wait for Neptune to store what is queued; the run stays open, as in
        Lightning; ``run.stop()`` (or the process's exit) closes it."""
        if self._run is None:
            return
        run = self._run
        self._courier.send("status", functools.partial(_assign, run, self._path("status"), status))
        self._courier.send("wait", run.wait)
        self._courier.close(self.delivery_timeout_s)


def _assign(run: Any, path: str, value: Any) -> None:
    run[path] = value


def _upload(run: Any, path: str, file: str) -> None:
    run[path].upload(file)
