"""The batch-size search: grow the batch size until memory runs out (or a limit), and keep the largest that ran."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from auxiliary.probing import attribute_holders, left_as_found, probe_trainer, read_attribute, write_attribute
from engineering import Callback, MisconfigurationError, Trainer

METHODS = ("fit", "validate", "test", "predict")
_OUT_OF_MEMORY_MESSAGES = ("CUDA out of memory", "CUDA error: out of memory", "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED",
                           "DefaultCPUAllocator: can't allocate memory", "MPS backend out of memory")


def scale_batch_size(trainer: Trainer, model: Any, datamodule: Any = None, method: str = "fit", mode: str = "power",
                     steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                     batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192) -> int | None:
    """The largest batch size that runs ``steps_per_trial`` steps of ``method`` on ``trainer``'s device.

    "power" doubles from ``init_val`` until a trial runs out of memory (then halves once), the dataset is
    smaller than the batch, ``max_trials`` ran, or ``max_val`` is reached; "binsearch" doubles likewise, then
    bisects between the last size that ran and the first that did not, and takes ``margin`` off the result.
    Each trial is a short probe run with data from the model's or datamodule's dataloader hooks, which read
    ``batch_arg_name`` (an attribute or hparam of the model or datamodule); the value found is left there, the
    model's weights as they were.
    """
    if mode not in ("power", "binsearch"):
        raise MisconfigurationError(f"scale_batch_size(mode={mode!r}): use 'power' or 'binsearch'.")
    if method not in METHODS:
        raise MisconfigurationError(f"scale_batch_size(method={method!r}): use one of {list(METHODS)}.")
    if not 0.0 <= margin < 1.0:
        raise MisconfigurationError(f"scale_batch_size(margin={margin}) must be in [0, 1).")
    if trainer.fast_dev_run:
        print("Skipping the batch-size finder: fast_dev_run is on.")
        return None
    holders = attribute_holders(model, datamodule, batch_arg_name)
    if not holders:
        raise MisconfigurationError(
            f"scale_batch_size looks for {batch_arg_name!r} in the model, model.hparams, the datamodule and "
            "datamodule.hparams, and found it in none. Give the dataloader hooks that attribute to read, or name "
            "yours with batch_arg_name=..."
        )

    original = read_attribute(holders, batch_arg_name)

    def trial(size: int) -> int | None:
        write_attribute(holders, batch_arg_name, size)
        return _run_trial(trainer, model, datamodule, method, steps_per_trial)

    with left_as_found(model, datamodule):
        search = _power_search if mode == "power" else _binary_search
        found = search(trial, init_val, max_trials, max_val)
    if mode == "binsearch" and margin > 0:
        found = max(1, int(found * (1 - margin)))
    write_attribute(holders, batch_arg_name, found)
    print(f"Batch size finder: {batch_arg_name} = {found} (was {original}).")
    return found


def _power_search(trial: Callable[[int], int | None], size: int, max_trials: int, max_val: int) -> int:
    ran_once = False
    for attempt in range(max_trials):
        if size >= max_val:
            print(f"Batch size finder: reached max_val={max_val}.")
            return size
        fits, dataset_length = _attempt(trial, size)
        if not fits:
            size //= 2
            if ran_once or size == 0:
                return max(size, 1)
            continue
        ran_once = True
        if attempt + 1 >= max_trials or (dataset_length is not None and size >= dataset_length):
            return size
        size = min(size * 2, max_val)
    return size


def _binary_search(trial: Callable[[int], int | None], size: int, max_trials: int, max_val: int) -> int:
    low, high, trials = 1, None, 0
    while True:
        if size >= max_val:
            print(f"Batch size finder: reached max_val={max_val}.")
            return size
        fits, dataset_length = _attempt(trial, size)
        if not fits:
            high = size
            size = (high + low) // 2
            if high - low <= 1:
                return size
            continue
        trials += 1
        low = size
        if trials >= max_trials:
            return size
        if high is not None:
            if high - low <= 1:
                return size
            size = (high + low) // 2
        elif dataset_length is not None and size >= dataset_length:
            return size
        else:
            size = min(size * 2, max_val)


def _attempt(trial: Callable[[int], int | None], size: int) -> tuple[bool, int | None]:
    """Run ``trial(size)``: (True, the dataset's length or None) when it fit, (False, None) when it ran out of
    memory, which is freed again; any other error propagates."""
    try:
        return True, trial(size)
    except RuntimeError as error:
        if not _is_out_of_memory(error):
            raise
        _free_memory()
        return False, None


def _run_trial(trainer: Trainer, model: Any, datamodule: Any, method: str, steps: int) -> int | None:
    """Run ``steps`` batches of ``method``; return the length of the (first) dataset read, None when unknown."""
    if method == "fit":
        probe = probe_trainer(trainer, [], max_steps=steps, limit_train_batches=1.0, limit_val_batches=steps)
        probe.fit(model, datamodule=datamodule)
        loaders = probe.train_dataloader
    elif method == "predict":
        probe = probe_trainer(trainer, [], limit_predict_batches=steps)
        probe.predict(model, datamodule=datamodule, return_predictions=False)
        loaders = probe.predict_dataloaders
    else:
        probe = probe_trainer(trainer, [], **{f"limit_{'val' if method == 'validate' else 'test'}_batches": steps})
        getattr(probe, method)(model, datamodule=datamodule, verbose=False)
        loaders = probe.val_dataloaders if method == "validate" else probe.test_dataloaders
    first = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders  # one loader, or a list
    try:
        return len(first.dataset)
    except (AttributeError, IndexError, TypeError):  # an iterable dataset, or no dataloader
        return None


def _is_out_of_memory(error: RuntimeError) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or any(text in str(error) for text in _OUT_OF_MEMORY_MESSAGES)


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class BatchSizeFinder(Callback):
    """The batch-size search as a callback: at ``setup``, before the run builds its dataloaders, it searches
    (see ``scale_batch_size``) and leaves the size found in ``batch_arg_name``, so this run uses it. The
    dataloaders must come from the model's or datamodule's hooks."""

    def __init__(self, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                 batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192) -> None:
        if mode not in ("power", "binsearch"):
            raise MisconfigurationError(f"BatchSizeFinder(mode={mode!r}): use 'power' or 'binsearch'.")
        self._arguments = dict(mode=mode, steps_per_trial=steps_per_trial, init_val=init_val, max_trials=max_trials,
                               batch_arg_name=batch_arg_name, margin=margin, max_val=max_val)
        self.optimal_batch_size: int | None = init_val

    def scale_batch_size(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Search for ``stage`` ("fit", "validate", "test" or "predict"); override to search elsewhere."""
        self.optimal_batch_size = scale_batch_size(trainer, pl_module, trainer.datamodule, method=stage,
                                                   **self._arguments)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.scale_batch_size(trainer, pl_module, stage)
