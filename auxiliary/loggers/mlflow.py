"""MLFlowLogger: metrics, parameters, tags and checkpoints to an MLflow tracking store (a folder, a database or
a server), through ``mlflow.tracking.MlflowClient``."""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from auxiliary.loggers.tracking import (AbsentExperiment, Courier, as_dict, checkpoint_metadata,
                                        checkpoints_to_upload, flatten, load, require, with_prefix)
from auxiliary.ranks import global_rank, rank_zero_only
from engineering import Logger

_FILE_URI = "file:"
# MLflow's run statuses for the Trainer's "success", "failed" and "interrupted".
_RUN_STATUS = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
# MLflow error codes for a call the store refused; sending it again cannot succeed.
_REFUSED = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"}
_METRIC_NAME_REFUSED = re.compile(r"[^a-zA-Z0-9_/. -]+")


class MLFlowLogger(Logger):
    """Logs to the MLflow run ``run_id``, or a new run in ``experiment_name`` (created when missing).

    The store is ``tracking_uri`` (``MLFLOW_TRACKING_URI`` when not given): ``sqlite:///mlflow.db``,
    ``http://host:5000``, or, when neither is set, the folder ``save_dir``. Calls to the store run on a
    background thread: a store that stops answering gives a warning and is retried with backoff, the metrics
    waiting in memory, and ``finalize`` waits up to ``delivery_timeout_s`` for them. ``log_model=True`` uploads
    the checkpoints once training ends, ``"all"`` each time one is written. Only global rank 0 talks to MLflow.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        experiment_name: str = "lightning_logs",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        save_dir: str | os.PathLike | None = "./mlruns",
        log_model: Literal[True, False, "all"] = False,
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
        synchronous: bool | None = None,
        delivery_timeout_s: float = 60.0,
    ) -> None:
        require("mlflow", "mlflow", "MLFlowLogger")
        if log_model not in (True, False, "all"):
            raise ValueError(f"MLFlowLogger(log_model={log_model!r}): use True, False or 'all'.")
        tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri:
            tracking_uri = Path(os.fspath(save_dir or "./mlruns")).resolve().as_uri()
        self._tracking_uri = tracking_uri
        self._experiment_name = experiment_name
        self._run_name = run_name
        self.tags = dict(tags or {})
        self._log_model = log_model
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._run_id = run_id
        self._experiment_id: str | None = None
        self._log_batch_options = {} if synchronous is None else {"synchronous": synchronous}
        self.delivery_timeout_s = delivery_timeout_s
        self._client: Any = None
        self._courier = Courier("MLflow", permanent=_refused)
        self._checkpoint_callback: Any = None
        self._uploaded: dict[str, float] = {}
        self._renamed_metrics: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a spawned process) without the client; the run id takes the copy to the same run."""
        return {**self.__dict__, "_client": None}

    # -- the run -------------------------------------------------------------------------------
    @property
    def experiment(self) -> Any:
        """The ``MlflowClient``; the first access opens the run (and imports mlflow). On other ranks, a no-op."""
        if global_rank() != 0:
            return AbsentExperiment()
        if self._client is None:
            self._client = self._open_run()
        return self._client

    def _open_run(self) -> Any:
        mlflow = load("mlflow")
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(self._tracking_uri)  # so mlflow.* calls in the user's code reach the same store
        try:
            client = MlflowClient(self._tracking_uri)
            if self._run_id is not None:
                self._experiment_id = client.get_run(self._run_id).info.experiment_id
                return client
            experiment = client.get_experiment_by_name(self._experiment_name)
            if experiment is not None and experiment.lifecycle_stage != "deleted":
                self._experiment_id = experiment.experiment_id
            else:
                self._experiment_id = client.create_experiment(self._experiment_name,
                                                               artifact_location=self._artifact_location)
        except mlflow.exceptions.MlflowException as error:
            if self._tracking_uri.startswith(_FILE_URI) and "MLFLOW_ALLOW_FILE_STORE" in str(error):
                raise RuntimeError(
                    f"MLflow {mlflow.__version__} no longer writes runs to a folder ({self._tracking_uri}) unless "
                    "asked: set MLFLOW_ALLOW_FILE_STORE=true, or pass tracking_uri='sqlite:///mlflow.db'."
                ) from error
            raise
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        tags = dict(self.tags)
        if self._run_name is not None:
            if MLFLOW_RUN_NAME in tags:
                warnings.warn(f"MLFlowLogger: run_name={self._run_name!r} replaces the tag {MLFLOW_RUN_NAME}.",
                              stacklevel=3)
            tags[MLFLOW_RUN_NAME] = self._run_name
        run = client.create_run(self._experiment_id, tags=resolve_tags(tags))
        self._run_id = run.info.run_id
        return client

    @property
    def run_id(self) -> str | None:
        _ = self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        _ = self.experiment
        return self._experiment_id

    @property
    def name(self) -> str | None:
        """The experiment id, as Lightning's MLFlowLogger has it."""
        return self.experiment_id

    @property
    def version(self) -> str | None:
        return self.run_id

    @property
    def save_dir(self) -> str | None:
        """The folder of a folder store; None for a database or a server."""
        if self._tracking_uri.startswith(_FILE_URI):
            return self._tracking_uri.removeprefix("file://").removeprefix(_FILE_URI)
        return None

    # -- logging -------------------------------------------------------------------------------
    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        client, run_id = self.experiment, self.run_id
        params_list = []
        for key, value in flatten(as_dict(params)).items():
            text = str(value)
            if len(text) > MAX_PARAM_VAL_LENGTH:
                warnings.warn(f"MLFlowLogger: the value of {key!r} is cut to MLflow's {MAX_PARAM_VAL_LENGTH} "
                              "characters.", stacklevel=2)
            params_list.append(Param(key, text[:MAX_PARAM_VAL_LENGTH]))
        for start in range(0, len(params_list), 100):  # MLflow takes at most 100 parameters a call
            batch = params_list[start:start + 100]
            self._courier.send("log_hyperparams", lambda batch=batch: client.log_batch(
                run_id, params=batch, **self._log_batch_options))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        client, run_id = self.experiment, self.run_id
        timestamp_ms = int(time.time() * 1000)
        batch = []
        for key, value in with_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            if isinstance(value, str):
                warnings.warn(f"MLFlowLogger: {key}={value!r} is a string, not a number; it is not logged.",
                              stacklevel=2)
                continue
            batch.append(Metric(self._allowed_name(key), float(value), timestamp_ms, step or 0))
        self._courier.send(f"log_metrics at step {step}",
                           lambda: client.log_batch(run_id, metrics=batch, **self._log_batch_options))

    def _allowed_name(self, key: str) -> str:
        allowed = _METRIC_NAME_REFUSED.sub("", key)
        if allowed != key and key not in self._renamed_metrics:
            self._renamed_metrics.add(key)
            warnings.warn(f"MLFlowLogger: MLflow allows only letters, digits and '_/. -' in metric names; "
                          f"{key!r} is logged as {allowed!r}.", RuntimeWarning, stacklevel=4)
        return allowed

    @rank_zero_only
    def save(self) -> None:
        """Wait up to ``delivery_timeout_s`` until the store holds everything logged so far."""
        self._courier.flush(self.delivery_timeout_s)

    # -- checkpoints and the end ---------------------------------------------------------------
    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._upload_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    def _upload_checkpoints(self, checkpoint_callback: Any) -> None:
        """Each file goes under an artifact folder named after it, with ``metadata.yaml`` and ``aliases.txt``."""
        client, run_id = self.experiment, self.run_id
        for path, score, is_best in checkpoints_to_upload(checkpoint_callback, self._uploaded):
            self._uploaded[path] = Path(path).stat().st_mtime
            folder = Path(path).stem
            aliases = ["latest", "best"] if is_best else ["latest"]
            metadata = checkpoint_metadata(checkpoint_callback, path, score)

            def upload(path: str = path, folder: str = folder, aliases: list = aliases, metadata: dict = metadata):
                client.log_artifact(run_id, path, folder)
                with tempfile.TemporaryDirectory() as directory:
                    Path(directory, "metadata.yaml").write_text(yaml.safe_dump(metadata))
                    Path(directory, "aliases.txt").write_text(str(aliases))
                    client.log_artifacts(run_id, directory, folder)

            self._courier.send(f"upload of {path}", upload)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Upload the checkpoints kept for the end, deliver what waits, and mark the run with ``status``."""
        if self._client is None:
            return
        if self._checkpoint_callback is not None:
            self._upload_checkpoints(self._checkpoint_callback)
        client, run_id = self._client, self._run_id
        self._courier.send(f"marking the run {_RUN_STATUS.get(status, status)}",
                           lambda: client.set_terminated(run_id, _RUN_STATUS.get(status, status)))
        self._courier.close(self.delivery_timeout_s)


def _refused(error: BaseException) -> bool:
    """The store refused the call; sending it again cannot succeed."""
    return getattr(error, "error_code", None) in _REFUSED
