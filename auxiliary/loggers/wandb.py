"""WandbLogger: metrics, config, media and checkpoints to a Weights & Biases run, online or offline."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from auxiliary.loggers.tracking import (AbsentExperiment, Courier, as_dict, checkpoint_metadata,
                                        checkpoints_to_upload, load, plain, require, with_prefix)
from auxiliary.ranks import global_rank, rank_zero_only
from engineering import Logger

STEP_METRIC = "trainer/global_step"


class WandbLogger(Logger):
    """Logs to a W&B run: ``wandb.init(name, project, dir=save_dir, id=version or id, resume="allow")``.

    ``offline=True`` (or ``WANDB_MODE=offline``) writes the run under ``save_dir/wandb/`` with no network;
    ``wandb sync`` uploads it later. Passing the ``id`` of an earlier run continues it. Every metric is plotted
    against ``trainer/global_step``. ``log_model=True`` logs the checkpoints as a ``model`` artifact once
    training succeeds, ``"all"`` each time one is written (offline too: they are uploaded at sync). Other
    keyword arguments go to ``wandb.init``. Calls run on a background thread, so a failing W&B gives a
    warning and a retry, never a crashed training run. Only global rank 0 talks to W&B.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike = ".",
        version: str | None = None,
        offline: bool = False,
        dir: str | os.PathLike | None = None,
        id: str | None = None,
        anonymous: bool | None = None,
        project: str | None = None,
        log_model: Literal["all"] | bool = False,
        experiment: Any = None,
        prefix: str = "",
        checkpoint_name: str | None = None,
        add_file_policy: Literal["mutable", "immutable"] = "mutable",
        delivery_timeout_s: float = 60.0,
        **init_options: Any,
    ) -> None:
        require("wandb", "wandb", "WandbLogger")
        if log_model not in (True, False, "all"):
            raise ValueError(f"WandbLogger(log_model={log_model!r}): use True, False or 'all'.")
        if version is not None and id is not None and version != id:
            raise ValueError(f"WandbLogger got version={version!r} and id={id!r}; they name the same run, pass one.")
        self._log_model = log_model
        self._prefix = prefix
        self._experiment = experiment
        self._checkpoint_name = checkpoint_name
        self.add_file_policy = add_file_policy
        self.delivery_timeout_s = delivery_timeout_s
        directory = save_dir if save_dir is not None else dir
        self._init_options: dict[str, Any] = {
            "name": name,
            "project": project or os.environ.get("WANDB_PROJECT", "lightning_logs"),
            "dir": os.fspath(directory) if directory is not None else None,
            "id": version or id,
            "resume": "allow",
            "anonymous": "allow" if anonymous else None,
        }
        if offline:
            self._init_options["mode"] = "offline"
        self._init_options.update(init_options)
        self._courier = Courier("W&B")
        self._checkpoint_callbacks: dict[int, Any] = {}
        self._uploaded: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a spawned process) without the run; its id takes the copy to the same run."""
        state = {**self.__dict__, "_experiment": None}
        if self._experiment is not None:
            state["_init_options"] = {**self._init_options, "id": self._experiment.id}
        return state

    @property
    def experiment(self) -> Any:
        """The ``wandb`` Run; the first access starts it (and imports wandb). On other ranks, a no-op."""
        if global_rank() != 0:
            return AbsentExperiment()
        if self._experiment is None:
            wandb = load("wandb")
            if wandb.run is not None:
                warnings.warn("WandbLogger: a wandb run is already in progress, so this logger logs to it; call "
                              "wandb.finish() before creating the logger to start a new one.", stacklevel=2)
                self._experiment = wandb.run
            else:
                if self._init_options["dir"] is not None:
                    os.makedirs(self._init_options["dir"], exist_ok=True)
                self._experiment = wandb.init(**self._init_options)
                self._experiment.define_metric(STEP_METRIC)
                self._experiment.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
        return self._experiment

    @property
    def name(self) -> str | None:
        """The project, as Lightning's WandbLogger has it."""
        return self._init_options["project"]

    @property
    def version(self) -> str | None:
        return self._experiment.id if self._experiment is not None else self._init_options["id"]

    @property
    def save_dir(self) -> str | None:
        return self._init_options["dir"]

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Let W&B hook ``model`` to log its gradients (and parameters, with ``log="all"``)."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace) -> None:
        config = {key: _config_value(value) for key, value in as_dict(params).items()}
        run = self.experiment
        self._courier.send("log_hyperparams", lambda: run.config.update(config, allow_val_change=True))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        row = with_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        if step is not None:
            row[STEP_METRIC] = step
        run = self.experiment
        self._courier.send(f"log_metrics at step {step}", lambda: run.log(row))

    @rank_zero_only
    def log_table(self, key: str, columns: list[str] | None = None, data: list[list[Any]] | None = None,
                  dataframe: Any = None, step: int | None = None) -> None:
        """A ``wandb.Table`` from ``columns`` and ``data`` rows, or from a pandas ``dataframe``."""
        self.log_metrics({key: load("wandb").Table(columns=columns, data=data, dataframe=dataframe)}, step)

    @rank_zero_only
    def log_text(self, key: str, columns: list[str] | None = None, data: list[list[str]] | None = None,
                 dataframe: Any = None, step: int | None = None) -> None:
        self.log_table(key, columns, data, dataframe, step)

    @rank_zero_only
    def log_image(self, key: str, images: list[Any], step: int | None = None, **per_image: list[Any]) -> None:
        """``wandb.Image`` of each image (tensor, array, PIL image or path); ``per_image`` lists one option each,
        e.g. ``caption=["cat", "dog"]``."""
        self._log_media(key, "Image", images, step, per_image)

    @rank_zero_only
    def log_audio(self, key: str, audios: list[Any], step: int | None = None, **per_audio: list[Any]) -> None:
        self._log_media(key, "Audio", audios, step, per_audio)

    @rank_zero_only
    def log_video(self, key: str, videos: list[Any], step: int | None = None, **per_video: list[Any]) -> None:
        self._log_media(key, "Video", videos, step, per_video)

    def _log_media(self, key: str, kind: str, items: list[Any], step: int | None,
                   options: dict[str, list[Any]]) -> None:
        if not isinstance(items, list):
            raise TypeError(f"WandbLogger.log_{kind.lower()} takes a list of items, got {type(items).__name__}.")
        for option, values in options.items():
            if len(values) != len(items):
                raise ValueError(f"WandbLogger.log_{kind.lower()}: {option} has {len(values)} values for "
                                 f"{len(items)} items; give one per item.")
        media = getattr(load("wandb"), kind)
        self.log_metrics({key: [media(item, **{option: values[index] for option, values in options.items()})
                                for index, item in enumerate(items)]}, step)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._upload_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback

    def _upload_checkpoints(self, checkpoint_callback: Any) -> None:
        """Each file becomes a version of the ``model-<run id>`` artifact, aliased "latest" (and "best")."""
        wandb, run = load("wandb"), self.experiment
        name = self._checkpoint_name or f"model-{run.id}"
        for path, score, is_best in checkpoints_to_upload(checkpoint_callback, self._uploaded):
            self._uploaded[path] = Path(path).stat().st_mtime
            artifact = wandb.Artifact(name=name, type="model",
                                      metadata=checkpoint_metadata(checkpoint_callback, path, score))
            artifact.add_file(path, name="model.ckpt", policy=self.add_file_policy)
            aliases = ["latest", "best"] if is_best else ["latest"]
            self._courier.send(f"upload of {path}", lambda artifact=artifact, aliases=aliases:
                               run.log_artifact(artifact, aliases=aliases))

    @rank_zero_only
    def save(self) -> None:
        """Wait up to ``delivery_timeout_s`` until W&B has everything logged so far."""
        self._courier.flush(self.delivery_timeout_s)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Log the checkpoints kept for a successful end and deliver what waits; the run stays open, as in
        Lightning, for a later ``test``; ``wandb.finish()`` (or the process's exit) closes it."""
        if self._experiment is None:
            return
        if status == "success":
            for checkpoint_callback in self._checkpoint_callbacks.values():
                self._upload_checkpoints(checkpoint_callback)
        self._courier.close(self.delivery_timeout_s)


def _config_value(value: Any) -> Any:
    """A class or function as its name (W&B stores JSON), anything else as a plain value."""
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return plain(value)
