"""WeightAveraging and EMAWeightAveraging: an averaged copy of the model, on ``torch.optim.swa_utils.AveragedModel``."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

from engineering import Callback, MisconfigurationError, ignores


class WeightAveraging(Callback):
    """Keep an ``AveragedModel`` of the module, updated after each optimizer step (or when ``should_update`` says).

    Validation runs on the averaged weights (swapped in for the validation epoch, swapped back after), and when
    training ends the module keeps the averaged weights. A checkpoint holds the averaged weights under
    ``state_dict`` (so a model loaded from it is the averaged one) and the current weights under
    ``current_model_state``; resuming puts both back. ``avg_fn``/``multi_avg_fn`` and other keyword arguments go
    to ``AveragedModel``; without one the average is the plain mean (SWA). ``use_buffers=True`` averages buffers
    too, unlike ``AveragedModel``'s default.
    """

    def __init__(self, device: torch.device | str | int | None = None, use_buffers: bool = True, **kwargs: Any) -> None:
        self._device = torch.device(device) if isinstance(device, str) else device
        self._use_buffers = use_buffers
        self._kwargs = kwargs
        self._average_model: AveragedModel | None = None
        self._latest_update_step = 0
        self._latest_update_epoch = -1

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """Whether to update the average after optimizer step ``step_idx`` or epoch ``epoch_idx`` (0-based; one of
        them is given). Override to choose; by default after every step."""
        return step_idx is not None

    @property
    def average_model(self) -> AveragedModel | None:
        """The ``AveragedModel`` while fit runs (and after); None before."""
        return self._average_model

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        device = self._device if self._device is not None else trainer.strategy.root_device
        self._average_model = AveragedModel(pl_module, device=device, use_buffers=self._use_buffers, **self._kwargs)

    @ignores("outputs")
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Several batches make one step when gradients accumulate: update once per optimizer step.
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=trainer.global_step - 1):
            self._average_model.update_parameters(pl_module)
            self._latest_update_step = trainer.global_step

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch > self._latest_update_epoch and self.should_update(epoch_idx=trainer.current_epoch):
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = trainer.current_epoch

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        for average, current in _paired_tensors(self._average_model.module, pl_module):
            current.data.copy_(average.data)

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self._average_model is not None:
            self._swap_weights(pl_module)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._average_model is not None:
            self._swap_weights(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self._latest_update_step, "latest_update_epoch": self._latest_update_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_step = state_dict["latest_update_step"]
        self._latest_update_epoch = state_dict.get("latest_update_epoch", -1)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self._average_model is None:
            return  # outside fit there is no average: the module's own weights are saved
        average_state = self._average_model.state_dict()
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = {name.removeprefix("module."): value for name, value in average_state.items()
                                    if name.startswith("module.")}
        checkpoint["averaging_state"] = {name: value for name, value in average_state.items()
                                         if not name.startswith("module.")}

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self._average_model is None:
            return  # validate/test/predict from an averaged checkpoint: its state_dict is the averaged model
        if "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            average_state = {f"module.{name}": value for name, value in checkpoint["state_dict"].items()}
            self._average_model.load_state_dict({**average_state, **checkpoint["averaging_state"]})
            # The Trainer loads checkpoint["state_dict"] into the module after this hook: make that the weights
            # training had reached, not the average.
            checkpoint["state_dict"] = checkpoint["current_model_state"]
        else:
            warnings.warn(
                f"{type(self).__name__}: the checkpoint was not written with weight averaging, so the average starts "
                "from its weights.", RuntimeWarning, stacklevel=2,
            )
            self._average_model.module.load_state_dict(checkpoint["state_dict"], strict=False)

    def _swap_weights(self, pl_module: Any) -> None:
        for average, current in _paired_tensors(self._average_model.module, pl_module):
            kept = average.data.clone()
            average.data.copy_(current.data)
            current.data.copy_(kept)


def _paired_tensors(average: torch.nn.Module, current: torch.nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return zip(itertools.chain(average.parameters(), average.buffers()),
               itertools.chain(current.parameters(), current.buffers()))


class EMAWeightAveraging(WeightAveraging):
    """An exponential moving average of the weights: ``average = decay * average + (1 - decay) * weights``.

    Updated after every ``update_every_n_steps``-th optimizer step from ``update_starting_at_step`` on, and at the
    end of each epoch from ``update_starting_at_epoch`` on (when given).
    """

    def __init__(
        self,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise MisconfigurationError(f"EMAWeightAveraging(decay={decay!r}) must be between 0 and 1.")
        super().__init__(device=device, use_buffers=use_buffers, avg_fn=get_ema_avg_fn(decay=decay), **kwargs)
        self.decay = decay
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        if step_idx is not None:
            started = self.update_starting_at_step is None or step_idx >= self.update_starting_at_step
            if started and self.update_every_n_steps > 0 and step_idx % self.update_every_n_steps == 0:
                return True
        if epoch_idx is not None:
            return self.update_starting_at_epoch is not None and epoch_idx >= self.update_starting_at_epoch
        return False
