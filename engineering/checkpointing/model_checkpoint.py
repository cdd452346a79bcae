"""ModelCheckpoint and OnExceptionCheckpoint: when to save, under which name, and which files to keep.

The semantics are Lightning's: filename templates (``"{epoch}-{val_loss:.2f}"``), top-k by a monitored
metric, ``save_last``, ``every_n_train_steps`` (optimizer steps) / ``every_n_epochs`` / ``train_time_interval``,
and the bookkeeping (``best_model_path``, ``best_k_models``, ``last_model_path``...) restored on resume.

One difference, for exact resume: what a hook decides is written when the batch (or the epoch) in progress
is complete, where the loop calls ``write_requested``. A checkpoint then never holds half a step, and
resuming from it repeats and skips nothing. A file to delete goes only after its replacement is on disk.
"""

from __future__ import annotations

import datetime
import os
import re
import time
import warnings
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch

from engineering.bus.callback import Callback
from engineering.bus.event import ignores
from engineering.checkpointing.model_checkpoint_rules import TEMPLATE_FIELD, check_arguments, remove_orphans
from engineering.checkpointing.writer import CheckpointWriter
from engineering.errors import MisconfigurationError


class ModelCheckpoint(Callback):
    """Save the run as it trains; by default once per epoch, keeping the latest file."""

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1
    is_monitor = True  # its on_train_epoch_end runs after the module's, so it sees what the module logged there

    def __init__(
        self,
        dirpath: str | os.PathLike | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | str | None = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: datetime.timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
        async_save: bool = False,
    ) -> None:
        every_n_train_steps, every_n_epochs = check_arguments(
            mode, save_last, save_top_k, monitor, every_n_train_steps, every_n_epochs, train_time_interval
        )
        self._every_n_train_steps = every_n_train_steps
        self._every_n_epochs = every_n_epochs
        self._train_time_interval = train_time_interval
        self.dirpath = os.path.realpath(os.path.expanduser(dirpath)) if dirpath else None
        self.filename = filename
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_on_exception = save_on_exception
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.auto_insert_metric_name = auto_insert_metric_name
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self._enable_version_counter = enable_version_counter

        self.best_k_models: dict[str, torch.Tensor] = {}
        self.kth_best_model_path = ""
        self.kth_value = torch.tensor(float("inf") if mode == "min" else float("-inf"))
        self.best_model_score: torch.Tensor | None = None
        self.best_model_path = ""
        self.last_model_path = ""
        self.current_score: torch.Tensor | None = None
        self._last_global_step_saved = 0  # nothing to save before the first step
        self._last_checkpoint_saved = ""
        self._last_time_checked: float | None = None
        self._global_step_seen: int | None = None
        self._waiting_for_validation = False
        # Decided, not yet written: ("save" | "link" | "remove", path, link target). The loop reads it after every
        # batch and calls write_requested only when something is there.
        self.pending_writes: list[tuple[str, str, str]] = []
        self._writer = CheckpointWriter(async_save)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            monitor=self.monitor, mode=self.mode, every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs, train_time_interval=self._train_time_interval,
        )

    @property
    def every_n_epochs(self) -> int:
        return self._every_n_epochs

    # -- hooks: decide -------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.dirpath = self.directory(trainer)
        fresh = stage == "fit" and trainer.ckpt_path is None  # a resumed run expects the files it finds
        if fresh and trainer.is_global_zero and self.save_top_k != 0 and any(Path(self.dirpath).glob("*")):
            warnings.warn(f"Checkpoint directory {self.dirpath} exists and is not empty.", stacklevel=2)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_time_checked = time.monotonic()
        self._global_step_seen = trainer.global_step
        if trainer.ckpt_path is not None and trainer.is_global_zero and self.save_top_k != 0:
            remove_orphans(self, trainer)  # files a kill left untracked (see model_checkpoint_rules.py)

    def listens_to(self, hook: str) -> bool:
        # Saving at epoch or validation ends only (the default) leaves nothing to decide per batch.
        saves_within_epochs = self._every_n_train_steps >= 1 or self._train_time_interval is not None
        return hook != "on_train_batch_end" or saves_within_epochs

    @ignores("outputs")
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Only right after an optimizer step: between accumulated batches the gradients are not in a checkpoint.
        stepped, self._global_step_seen = trainer.global_step != self._global_step_seen, trainer.global_step
        if not stepped or self._skip_saving(trainer):
            return
        due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        if self._train_time_interval is not None:
            now = time.monotonic()
            if now - self._last_time_checked >= self._train_time_interval.total_seconds():
                due, self._last_time_checked = True, now
        if not due:
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and self.monitor not in candidates:
            self._waiting_for_validation = True  # the metric comes from validation: decide once it has run
            return
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self._skip_saving(trainer) and self._saves_on_train_epoch_end(trainer):
            self._save_for_epoch(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self._skip_saving(trainer) or self._saves_on_train_epoch_end(trainer):
            return
        if self._waiting_for_validation:
            self._waiting_for_validation = False
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
            return
        self._save_for_epoch(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        # Requests from the failed batch would capture it half done: drop them.
        self.pending_writes.clear()
        if not self.save_on_exception or self._skip_saving(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        filepath = self.format_checkpoint_name(candidates)
        self._request_save(trainer, filepath)
        self._save_last_checkpoint(trainer, candidates)
        self.write_requested(trainer)
        self._writer.wait(trainer, self)
        print(f"{type(exception).__name__}: {exception}; saved checkpoint to {filepath}")

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.save_last and not self._last_checkpoint_saved and not self._not_saving_in(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self.write_requested(trainer)
        self._writer.wait(trainer, self)  # fit returns once the last file is on disk

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._writer.wait(trainer, self)
        self._writer.close()

    # -- the loop: write -----------------------------------------------------------------------
    def write_requested(self, trainer: Any) -> None:
        """Write the files decided since the last call, then delete the ones they replace (see ``writer.py``)."""
        if self.pending_writes:  # called after every batch; most have nothing to write
            requests, self.pending_writes = self.pending_writes, []
            self._writer.write(trainer, requests, self.save_weights_only, self)

    # -- where files go ------------------------------------------------------------------------
    def directory(self, trainer: Any) -> str:
        """``dirpath``, else ``<log_dir>/checkpoints`` (the logger's directory, or default_root_dir)."""
        return self.dirpath if self.dirpath is not None else os.path.join(trainer.log_dir, "checkpoints")

    def last_checkpoints(self, trainer: Any) -> list[Path]:
        """The "last" checkpoints this callback may have written, on disk, for ``ckpt_path="last"``."""
        directory = Path(self.directory(trainer))
        found = [Path(self.last_model_path)] if self.last_model_path else []
        if directory.is_dir():
            found += [path for path in directory.iterdir()
                      if path.suffix == self.FILE_EXTENSION and path.stem.startswith(self.CHECKPOINT_NAME_LAST)]
        return found

    def format_checkpoint_name(
        self, metrics: dict[str, Any], filename: str | None = None, ver: int | None = None, prefix: str | None = None
    ) -> str:
        """The path for ``metrics``: ``"{epoch}-{val_loss:.2f}"`` → ``epoch=2-val_loss=0.12.ckpt`` (a missing
        metric counts as 0); ``ver`` adds ``-v<ver>``."""
        template = filename or self.filename or "{epoch}" + self.CHECKPOINT_JOIN_CHAR + "{step}"

        def fill(field: re.Match) -> str:
            name, spec = field.group(1), (field.group(2) or ":")[1:]
            label = name + self.CHECKPOINT_EQUALS_CHAR if self.auto_insert_metric_name else ""
            return label + format(metrics.get(name, torch.tensor(0)), spec)

        name = TEMPLATE_FIELD.sub(fill, template)
        if prefix:
            name = self.CHECKPOINT_JOIN_CHAR.join([prefix, name])
        if ver is not None:
            name = self.CHECKPOINT_JOIN_CHAR.join([name, f"v{ver}"])
        name += self.FILE_EXTENSION
        return os.path.join(self.dirpath, name) if self.dirpath else name

    # -- state ---------------------------------------------------------------------------------
    def to_yaml(self, filepath: str | os.PathLike | None = None) -> None:
        """Write ``best_k_models`` (path: score as a float) as YAML, to ``<dirpath>/best_k_models.yaml`` by default."""
        if filepath is None and not self.dirpath:
            raise AssertionError("ModelCheckpoint.to_yaml() needs a filepath until fit has set dirpath.")
        import yaml

        path = filepath if filepath is not None else os.path.join(self.dirpath, "best_k_models.yaml")
        with open(path, "w") as file:
            yaml.dump({path: score.item() for path, score in self.best_k_models.items()}, file)

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor, "best_model_score": self.best_model_score, "best_model_path": self.best_model_path,
            "current_score": self.current_score, "dirpath": self.dirpath, "best_k_models": self.best_k_models,
            "kth_best_model_path": self.kth_best_model_path, "kth_value": self.kth_value,
            "last_model_path": self.last_model_path,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_dirpath = state_dict.get("dirpath", self.dirpath)
        if saved_dirpath == self.dirpath:
            self.best_model_score = state_dict["best_model_score"]
            self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value = state_dict.get("kth_value", self.kth_value)
            self.best_k_models = state_dict.get("best_k_models", self.best_k_models)
            self.last_model_path = state_dict.get("last_model_path", self.last_model_path)
        else:
            warnings.warn(
                f"The checkpoint directory changed from {saved_dirpath!r} to {self.dirpath!r}: only best_model_path "
                "is restored; the top-k ranking and last_model_path start afresh in the new directory.",
                stacklevel=2,
            )
        self.best_model_path = state_dict["best_model_path"]

    # -- deciding ------------------------------------------------------------------------------
    @staticmethod
    def _not_saving_in(trainer: Any) -> bool:
        return bool(trainer.fast_dev_run) or trainer.state.fn != "fit" or trainer.sanity_checking

    def _skip_saving(self, trainer: Any) -> bool:
        return self._not_saving_in(trainer) or self._last_global_step_saved == trainer.global_step

    def _saves_on_train_epoch_end(self, trainer: Any) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        if trainer.check_val_every_n_epoch != 1:
            return False
        if sum(trainer.num_val_batches) == 0:
            return True
        return trainer.val_check_interval == 1.0  # several validations per epoch: save after validation

    def _save_for_epoch(self, trainer: Any) -> None:
        candidates = self._monitor_candidates(trainer)
        if self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0:
            self._save_topk_checkpoint(trainer, candidates)
        if self._last_global_step_saved == trainer.global_step or (self.save_last == "link" and self._last_checkpoint_saved):
            self._save_last_checkpoint(trainer, candidates)

    def _monitor_candidates(self, trainer: Any) -> dict[str, Any]:
        candidates = deepcopy(trainer.callback_metrics)
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, torch.Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, torch.Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def _save_topk_checkpoint(self, trainer: Any, candidates: dict[str, Any]) -> None:
        # Before the bookkeeping changes: loggers read it, and file names are chosen by what exists on disk.
        self._writer.wait(trainer, self)
        if self.save_top_k == 0:
            return
        if self.monitor is None:
            self._save_latest(trainer, candidates)
            return
        current = candidates.get(self.monitor)
        if current is None:
            raise MisconfigurationError(
                f"ModelCheckpoint(monitor={self.monitor!r}) found no such metric; logged: {sorted(candidates)}. "
                f"Log it with self.log({self.monitor!r}, value), or fix the name."
            )
        if self._is_top_k(trainer, current):
            self._update_best_and_save(trainer, current, candidates)
        elif self.verbose:
            print(f"Epoch {trainer.current_epoch}, global step {trainer.global_step}: {self.monitor!r} was not in "
                  f"top {self.save_top_k}")

    def _is_top_k(self, trainer: Any, current: torch.Tensor) -> bool:
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        better = torch.lt if self.mode == "min" else torch.gt
        decision = bool(better(torch.as_tensor(current), self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(decision)

    def _save_latest(self, trainer: Any, candidates: dict[str, Any]) -> None:
        filepath = self._free_filepath(candidates, replacing=self.best_model_path)
        previous, self.best_model_path = self.best_model_path, filepath
        self._request_save(trainer, filepath)
        if self.save_top_k == 1 and previous and self._may_remove(trainer, previous, filepath):
            self.pending_writes.append(("remove", previous, ""))

    def _update_best_and_save(self, trainer: Any, current: Any, candidates: dict[str, Any]) -> None:
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        dropped = ""
        if len(self.best_k_models) == k and k > 0:
            dropped = self.kth_best_model_path
            self.best_k_models.pop(dropped)
        current = torch.as_tensor(current)
        if torch.isnan(current):  # a NaN score ranks last
            current = torch.tensor(float("inf") if self.mode == "min" else float("-inf"), device=current.device)
        filepath = self._free_filepath(candidates, replacing=dropped)
        self.current_score = current
        self.best_k_models[filepath] = current
        worst, best = (max, min) if self.mode == "min" else (min, max)
        if len(self.best_k_models) == k:
            self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.get)
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        self.best_model_path = best(self.best_k_models, key=self.best_k_models.get)
        self.best_model_score = self.best_k_models[self.best_model_path]
        if self.verbose:
            print(f"Epoch {trainer.current_epoch}, global step {trainer.global_step}: {self.monitor!r} reached "
                  f"{current.item():0.5f} (best {self.best_model_score.item():0.5f}), saving {filepath!r} as top {k}")
        self._request_save(trainer, filepath)
        if dropped and self._may_remove(trainer, dropped, filepath):
            self.pending_writes.append(("remove", dropped, ""))

    def _save_last_checkpoint(self, trainer: Any, candidates: dict[str, Any]) -> None:
        self._writer.wait(trainer, self)
        if not self.save_last:
            return
        filepath = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while os.path.exists(filepath) and filepath != self.last_model_path:
                filepath = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST, ver=version)
                version += 1
        previous, self.last_model_path = self.last_model_path, filepath  # before saving: it is part of the state
        if self.save_last == "link" and self._last_checkpoint_saved and self.save_top_k != 0:
            self.pending_writes.append(("link", filepath, self._last_checkpoint_saved))
        else:
            self._request_save(trainer, filepath)
        if previous and self._may_remove(trainer, previous, filepath):
            self.pending_writes.append(("remove", previous, ""))

    def _free_filepath(self, candidates: dict[str, Any], replacing: str) -> str:
        """The name for ``candidates``, with ``-v1``, ``-v2``... when a file of that name exists (and is not the
        one being replaced)."""
        filepath = self.format_checkpoint_name(candidates)
        version = self.STARTING_VERSION
        while self._enable_version_counter and os.path.exists(filepath) and filepath != replacing:
            filepath = self.format_checkpoint_name(candidates, ver=version)
            version += 1
        return filepath

    def _request_save(self, trainer: Any, filepath: str) -> None:
        self.pending_writes.append(("save", filepath, ""))
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath

    def _may_remove(self, trainer: Any, previous: str, current: str) -> bool:
        """Never the file just written, the file this run resumed from, or a file outside dirpath."""
        if previous == current:
            return False
        previous_path = Path(previous).absolute()
        resumed_from = getattr(trainer, "ckpt_path", None)
        if resumed_from is not None and previous_path == Path(resumed_from).absolute():
            return False
        return Path(self.dirpath).absolute() in previous_path.parents
