"""The checkpoint file: written atomically with a checksum, read without running code from it.

A file is torch.save's zip archive followed by a trailer, ``b"\\nTRIBUS-SHA256:" + 64 hex digits + b"\\n"``,
the SHA-256 of the archive. ``torch.load`` ignores bytes after the archive, so the file stays an ordinary
torch checkpoint; Lightning's files have no trailer and are read unverified.

This lives in ``research`` because ``LightningModule.load_from_checkpoint`` reads checkpoints and research
must not import the Trainer; ``engineering.checkpoint`` builds on it.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import inspect
import os
import pathlib
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any, BinaryIO

import torch
from torch import nn

TRAILER_MARK = b"\nTRIBUS-SHA256:"
TRAILER_LENGTH = len(TRAILER_MARK) + 64 + 1  # mark, hex digest, newline

# Besides tensors and plain containers, which torch allows anyway: the only other type a tribus checkpoint
# holds is a path among the hyperparameters. Building one runs no code from the file.
SAFE_TYPES = [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]

_CHUNK = 1 << 20


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or a file is not a checkpoint this code may load."""


class _HashingWriter:
    """A write-only file wrapper that hashes what torch.save writes, so the file is never read back."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def save_atomically(
    checkpoint: dict[str, Any], path: str | os.PathLike, serialize: Callable[[Any, Any], None] = torch.save
) -> None:
    """Write ``checkpoint`` to ``path``: a temporary file beside it, fsync, then rename over it.

    ``serialize(checkpoint, file)`` writes the bytes (``torch.save``, or an accelerator's own save).

    A reader (or a kill at any instant) sees the old file or the new one, never half of one. On a write
    error the temporary file is removed and the old file at ``path`` is left as it was.
    """
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # mkstemp creates the file 0600; give it the mode any new file gets (0644 under the usual umask), so that a
        # teammate in the same group can read it.
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as file:
            writer = _HashingWriter(file)
            serialize(checkpoint, writer)
            file.write(TRAILER_MARK + writer.digest.hexdigest().encode("ascii") + b"\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        failure = _os_error_in(error) if isinstance(error, (OSError, RuntimeError)) else None
        if failure is None:
            raise
        raise CheckpointError(_write_failure_message(path, failure)) from error
    _fsync_directory(path.parent)
    _remove_stale_temporaries(path)


def _umask() -> int:
    """The process's umask; reading it means setting it, so it is put back at once."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def link_atomically(target: str, link: str) -> None:
    """Point ``link`` at ``target`` (relative, so the directory can move); the old link is replaced in one rename."""
    temporary = f"{link}.{os.getpid()}.link"
    Path(temporary).unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, os.path.dirname(link)), temporary)
    os.replace(temporary, link)


def _os_error_in(error: BaseException | None) -> OSError | None:
    """The OSError behind ``error``; torch.save reports a failed write as a RuntimeError chained to it."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def _write_failure_message(path: Path, error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "the disk (or your quota) is full: free space, or point dirpath/default_root_dir elsewhere"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"{str(path.parent)!r} is not writable: fix its permissions, or point dirpath/default_root_dir elsewhere"
    else:
        fix = f"{error.strerror or error}"
    return (
        f"Could not write the checkpoint {str(path)!r}: {fix}. Nothing was replaced: the previous file at "
        "that path, if any, is intact."
    )


def _fsync_directory(directory: Path) -> None:
    # The rename survives a power loss only once the directory entry itself is on disk.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files a killed writer left for this name: harmless, but they would pile up."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = None, weights_only: bool = True
) -> dict[str, Any]:
    """Read a checkpoint, verifying its checksum when it has one.

    ``weights_only=True`` (the default) unpickles only tensors, plain containers and ``SAFE_TYPES``: a file
    that asks for anything else is refused, so loading never runs code from the file. Pass
    ``weights_only=False`` only for a file you trust. ``map_location=None`` keeps tensors where they were
    saved, or moves them to the CPU when that device is not available here.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"Checkpoint {str(path)!r} is a directory: pass one of the .ckpt files in it.")
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist. Check the path, or pass ckpt_path=None.")
    with open(path, "rb") as file:
        _verify_checksum(file, path)
        file.seek(0)
        try:
            if weights_only:
                with torch.serialization.safe_globals(SAFE_TYPES):
                    checkpoint = torch.load(file, map_location=map_location or _available_device, weights_only=True)
            else:
                checkpoint = torch.load(file, map_location=map_location or _available_device, weights_only=False)
        except pickle.UnpicklingError as error:
            if "weights only" not in str(error).lower():
                raise CheckpointError(_unreadable_message(path, error)) from error
            found = re.search(r"GLOBAL ([\w.]+)", str(error))
            raise CheckpointError(
                f"Refused to load {str(path)!r}: it holds a pickled Python object "
                f"({found.group(1) if found else 'not a tensor or plain container'}), and unpickling it could run "
                "code from the file. If you trust the file (you or your team wrote it), load it knowingly with "
                "weights_only=False: trainer.fit(..., weights_only=False) or "
                "Model.load_from_checkpoint(path, weights_only=False)."
            ) from None
        except Exception as error:
            raise CheckpointError(_unreadable_message(path, error)) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{str(path)!r} is not a training checkpoint: it has no 'state_dict'. Pass a file written by "
            "trainer.save_checkpoint or ModelCheckpoint."
        )
    return checkpoint


def _verify_checksum(file: BinaryIO, path: Path) -> None:
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - TRAILER_LENGTH))
    tail = file.read()
    if not (tail.startswith(TRAILER_MARK) and tail.endswith(b"\n") and len(tail) == TRAILER_LENGTH):
        if TRAILER_MARK.strip() in tail:
            raise CheckpointError(
                f"{str(path)!r} is truncated: its checksum trailer is cut off. Use an earlier checkpoint."
            )
        return  # written without a trailer (by Lightning or plain torch.save): nothing to verify
    expected = tail[len(TRAILER_MARK):-1].decode("ascii", errors="replace")
    digest = hashlib.sha256()
    remaining = size - TRAILER_LENGTH
    file.seek(0)
    while remaining > 0:
        chunk = file.read(min(_CHUNK, remaining))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    if digest.hexdigest() != expected:
        raise CheckpointError(
            f"{str(path)!r} is corrupted: its contents do not match the SHA-256 checksum recorded when it was "
            "written. Use an earlier checkpoint."
        )


def _unreadable_message(path: Path, error: BaseException) -> str:
    return (
        f"{str(path)!r} could not be read as a checkpoint: it is truncated or corrupted "
        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). Use an earlier checkpoint."
    )


def _available_device(storage: Any, location: str) -> Any:
    # A checkpoint written on a GPU machine still loads on a CPU-only one.
    device_type = location.split(":")[0]
    if device_type == "cpu":
        return storage
    backend = getattr(torch, device_type, None)
    is_available = getattr(backend, "is_available", None)
    if is_available is not None and is_available():
        return None
    return storage.cpu()


def load_weights(module: nn.Module, state_dict: dict[str, Any], strict: bool = True) -> None:
    """``module.load_state_dict`` with an error that names every missing, unexpected and mis-shaped key."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mis_shaped = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
        for key, value in state_dict.items()
        if key in expected and isinstance(value, torch.Tensor) and isinstance(expected[key], torch.Tensor)
        and value.shape != expected[key].shape
    ]
    problems = []
    if strict and missing:
        problems.append(f"missing keys: {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if mis_shaped:
        problems.append(f"different shapes: {mis_shaped}")
    if problems:
        fix = "Load it into the model that wrote it, with the same hyperparameters"
        if not mis_shaped:
            fix += ", or pass strict=False to load the keys that match"
        raise CheckpointError(f"The checkpoint does not fit {type(module).__name__} ({'; '.join(problems)}). {fix}.")
    module.load_state_dict(state_dict, strict=strict)
    if not strict and (missing or unexpected):
        warnings.warn(
            f"Loaded the matching weights into {type(module).__name__}; missing keys kept their values: {missing}; "
            f"unexpected keys were ignored: {unexpected}.",
            stacklevel=3,
        )


def init_arguments(cls: Any, checkpoint: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The ``__init__`` arguments that rebuild ``cls`` (a module or datamodule class): the hyperparameters saved
    under its ``CHECKPOINT_HYPER_PARAMS_KEY``, then ``overrides``."""
    saved = dict(checkpoint.get(cls.CHECKPOINT_HYPER_PARAMS_KEY) or {})
    parameters = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    named = {name for name, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name != "self"}
    container = checkpoint.get(cls.CHECKPOINT_HYPER_PARAMS_NAME)
    if container and container in named:
        saved = {container: saved}  # the old Lightning style: one argument holds every hyperparameter
    arguments = {**saved, **overrides}
    return arguments if takes_any else {name: value for name, value in arguments.items() if name in named}
