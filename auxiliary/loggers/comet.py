"""CometLogger: metrics, parameters and the model graph to a Comet experiment, online or offline."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any, Literal

from auxiliary.loggers.tracking import AbsentExperiment, Courier, as_dict, load, plain, require
from auxiliary.ranks import global_rank, rank_zero_only
from engineering import Logger


class CometLogger(Logger):
    """Logs to the Comet experiment ``comet_ml.start(api_key, workspace, project, experiment_key, mode, online)``.

    ``online=False`` writes an offline experiment, a zip archive in ``offline_directory`` that ``comet upload``
    sends later; no network is needed. ``experiment_key`` continues an earlier experiment (offline, a second
    archive with the same key); so does logging after ``finalize``, which ends the experiment. Other keyword arguments go to ``comet_ml.ExperimentConfig``. The ``epoch``
    metric becomes the epoch of the metrics logged with it, as in Lightning. Comet's own auto-logging is turned
    off (``COMET_DISABLE_AUTO_LOGGING=1`` unless set), since this logger sends what ``self.log`` records. Calls
    run on a background thread: a failing Comet gives a warning and a retry, never a crashed training run.
    Only global rank 0 talks to Comet.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        workspace: str | None = None,
        project: str | None = None,
        experiment_key: str | None = None,
        mode: Literal["get_or_create", "get", "create"] | None = None,
        online: bool | None = None,
        prefix: str | None = None,
        delivery_timeout_s: float = 60.0,
        **config: Any,
    ) -> None:
        require("comet_ml", "comet", "CometLogger")
        if mode not in (None, "get_or_create", "get", "create"):
            raise ValueError(f"CometLogger(mode={mode!r}): use 'get_or_create', 'get' or 'create'.")
        self._api_key = api_key
        self._workspace = workspace
        self._project = project
        self._experiment_key = experiment_key
        self._mode = mode
        self._online = online
        self._prefix = prefix
        self._config = config
        self.delivery_timeout_s = delivery_timeout_s
        self._experiment: Any = None
        self._courier = Courier("Comet")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a spawned process) without the experiment; its key takes the copy to the same one."""
        return {**self.__dict__, "_experiment": None}

    @property
    def experiment(self) -> Any:
        """The ``comet_ml`` experiment; the first access starts it (and imports comet_ml). On other ranks, a no-op."""
        if global_rank() != 0:
            return AbsentExperiment()
        if self._experiment is None:
            os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
            comet_ml = load("comet_ml")
            self._experiment = comet_ml.start(
                api_key=self._api_key, workspace=self._workspace, project=self._project,
                experiment_key=self._experiment_key, mode=self._mode, online=self._online,
                experiment_config=comet_ml.ExperimentConfig(**self._config),
            )
            self._experiment_key = self._experiment.get_key()
            self._project = self._experiment.project_name
            self._experiment.log_other("Created from", "tribus")
        return self._experiment

    @property
    def name(self) -> str | None:
        """The project, as Lightning's CometLogger has it."""
        return self._project

    @property
    def version(self) -> str | None:
        """The experiment key."""
        return self._experiment_key

    @property
    def save_dir(self) -> str | None:
        """Where an offline experiment's archive goes."""
        return self._config.get("offline_directory")

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace) -> None:
        """Nested parameters are flattened by Comet, as ``optimizer|lr``."""
        parameters = {key: plain(value) for key, value in as_dict(params).items()}
        experiment = self.experiment
        self._courier.send("log_hyperparams", lambda: experiment.log_parameters(parameters))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        experiment = self.experiment
        self._courier.send(f"log_metrics at step {step}", lambda: experiment.log_metrics(
            metrics, step=step, epoch=None if epoch is None else int(epoch), prefix=self._prefix))

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """The model's structure (its ``repr``), shown in Comet's Graph definition tab."""
        experiment = self.experiment
        self._courier.send("log_graph", lambda: experiment.set_model_graph(model))

    @rank_zero_only
    def save(self) -> None:
        """Wait up to ``delivery_timeout_s`` until Comet has everything logged so far."""
        self._courier.flush(self.delivery_timeout_s)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Deliver what waits and end the experiment, which completes its upload (offline: writes its archive).

        Lightning only flushes here; an offline archive, though, is written whole only by ``end()``. Logging
        afterwards (a later ``test``) continues the same experiment through its key.
        """
        if self._experiment is None:
            return
        self._courier.send("end", self._experiment.end)
        self._courier.close(self.delivery_timeout_s)
        self._experiment = None
