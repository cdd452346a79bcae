"""What file loggers share: ``<save_dir>/<name>/version_N`` directories and hparams.yaml."""

from __future__ import annotations

import argparse
import errno
import os
import re
import warnings
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from engineering import Logger


class VersionedDirectoryLogger(Logger):
    """A logger writing under ``save_dir/name/version_N``; N is the next free number unless given.

    A string ``version`` is used as the directory name as it is. When the file system refuses a write (a full
    disk, a read-only directory), the logger warns once, naming the file and the fix, and writes nothing more:
    training goes on without it.

    Args:
        save_dir: The directory that holds every run's logs.
        name: The experiment's directory under ``save_dir``; ``None`` or ``""`` writes versions directly
            into ``save_dir``.
        version: The run's number (``version_N``) or directory name; ``None`` takes the next free number.
    """

    writes_in_background = True  # its files are written from the run's log writer thread

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None) -> None:
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self.hparams: dict[str, Any] = {}
        self._write_failed = False

    @property
    def name(self) -> str:
        """The experiment's directory name under ``save_dir``."""
        return self._name

    @property
    def save_dir(self) -> str:
        """The directory that holds every run's logs."""
        return self._save_dir

    @property
    def root_dir(self) -> str:
        """``save_dir/name``: where the ``version_N`` directories are."""
        return os.path.join(self._save_dir, self._name)

    @property
    def version(self) -> int | str:
        """The run's version: the number of ``version_N``, chosen on first access, or the given string.

        The progress bar shows it as ``v_num``.
        """
        if self._version is None:
            self._version = _next_version(Path(self.root_dir))
        return self._version

    @property
    def log_dir(self) -> str:
        """This run's directory, ``save_dir/name/version_N``; checkpoints go under it by default."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        return os.path.join(self.root_dir, version)

    def save_hparams(self) -> None:
        """Write hparams.yaml as Lightning does: every value YAML can represent (objects as tagged ``!!python``
        nodes, an Enum as its name); a value it cannot is left out with a warning, and kept as its type's name."""
        writable = {}
        for key, value in self.hparams.items():
            value = value.name if isinstance(value, Enum) else value
            try:
                yaml.dump(value)
            except (TypeError, ValueError):
                warnings.warn(f"Skipping '{key}' parameter because it is not possible to safely dump to YAML.",
                              stacklevel=2)
                self.hparams[key] = type(value).__name__
            else:
                writable[key] = value
        path = os.path.join(self.log_dir, "hparams.yaml")

        def write() -> None:
            os.makedirs(self.log_dir, exist_ok=True)
            with open(path, "w", newline="") as file:
                yaml.dump(writable, file)

        self.write_or_stop(write, lambda: path)
    def write_or_stop(self, write: Callable[[], Any], path: Callable[[], str]) -> None:
        """Run ``write``, unless an earlier write failed. An ``OSError`` is not raised: it is reported once, naming
        the file (``path()`` when the error does not) and the fix, and this logger writes nothing more."""
        if self._write_failed:
            return
        try:
            write()
        except OSError as error:
            self._write_failed = True
            warnings.warn(_write_failure(type(self).__name__, error.filename or path(), error), UserWarning,
                          stacklevel=3)


def as_dict(params: Mapping[str, Any] | argparse.Namespace) -> dict[str, Any]:
    """Hyperparameters as a dict, whether they came as a mapping or parsed command-line arguments."""
    return dict(vars(params)) if isinstance(params, argparse.Namespace) else dict(params)


def _next_version(root: Path) -> int:
    versions = [int(match.group(1)) for entry in root.glob("version_*")
                if (match := re.fullmatch(r"version_(\d+)", entry.name))]
    return max(versions) + 1 if versions else 0


def _write_failure(logger: str, path: str, error: OSError) -> str:
    full = error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    reason = error.strerror or str(error)
    fix = ("free space on that disk (or raise the quota), or pass a save_dir on a disk with room" if full else
           f"make {os.path.dirname(os.fspath(path)) or '.'} writable, or pass a save_dir you can write to")
    return (f"{logger} could not write {path}: {reason} [Errno {error.errno}]. To keep its logs, {fix}. It writes "
            "nothing more in this run; training goes on, and checkpoints are written (and checked) on their own.")

