"""StochasticWeightAveraging: average the weights of the last epochs under an SWALR learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel

from engineering import Callback, LRSchedulerConfig, MisconfigurationError

_AverageFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class StochasticWeightAveraging(Callback):
    """Stochastic Weight Averaging (Izmailov et al., 2018), with Lightning's arguments and schedule.

    From epoch ``swa_epoch_start`` (an int, 1-based; or a float, that fraction of ``max_epochs``) the optimizer's
    scheduler is replaced by ``SWALR``, which anneals each group's learning rate to ``swa_lrs`` over
    ``annealing_epochs`` ("cos" or "linear"); at the start of each epoch from then to the last, the weights are
    added to an ``AveragedModel`` (kept on ``device``; ``avg_fn`` replaces the plain mean). When the last epoch
    ends the module receives the averaged parameters, and a module with batch norm gets its running statistics
    recomputed by one forward pass over the training data (``module(batch[0])``, as ``torch.optim.swa_utils.
    update_bn``). The average, its count and the SWALR state go in checkpoints, so a resumed run ends where an
    uninterrupted one does.
    """

    def __init__(
        self,
        swa_lrs: float | list[float],
        swa_epoch_start: int | float = 0.8,
        annealing_epochs: int = 10,
        annealing_strategy: str = "cos",
        avg_fn: _AverageFunction | None = None,
        device: torch.device | str | None = torch.device("cpu"),
    ) -> None:
        if isinstance(swa_epoch_start, int) and swa_epoch_start < 1 or (
            isinstance(swa_epoch_start, float) and not 0 <= swa_epoch_start <= 1
        ):
            raise MisconfigurationError(
                f"StochasticWeightAveraging(swa_epoch_start={swa_epoch_start!r}) must be an int >= 1 (an epoch, "
                "1-based) or a float between 0 and 1 (a fraction of max_epochs)."
            )
        valid_float = isinstance(swa_lrs, float) and swa_lrs > 0
        valid_list = isinstance(swa_lrs, list) and all(isinstance(lr, float) and lr > 0 for lr in swa_lrs)
        if not (valid_float or valid_list):
            raise MisconfigurationError(
                f"StochasticWeightAveraging(swa_lrs={swa_lrs!r}) must be a positive float, or a list of positive "
                "floats (one per parameter group)."
            )
        if annealing_strategy not in ("cos", "linear"):
            raise MisconfigurationError(
                f"StochasticWeightAveraging(annealing_strategy={annealing_strategy!r}): use 'cos' or 'linear'."
            )
        if avg_fn is not None and not callable(avg_fn):
            raise MisconfigurationError("StochasticWeightAveraging(avg_fn=...) must be callable.")
        if device is not None and not isinstance(device, (torch.device, str)):
            raise MisconfigurationError(
                f"StochasticWeightAveraging(device={device!r}) must be a torch.device or a str."
            )
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn = avg_fn
        self._device = device
        self._average_model: AveragedModel | None = None
        self._swa_scheduler: SWALR | None = None
        self._replaced_config: LRSchedulerConfig | None = None
        self._initialized = False
        self._max_epochs = -1
        self._latest_update_epoch = -1
        self._restored_scheduler_state: dict[str, Any] | None = None

    @property
    def swa_start(self) -> int:
        """The first epoch (0-based) whose starting weights enter the average."""
        return max(self._swa_epoch_start - 1, 0)

    @property
    def swa_end(self) -> float:
        """The last epoch (0-based) whose starting weights enter the average; inf without max_epochs."""
        return float("inf") if self._max_epochs == -1 else self._max_epochs - 1

    @property
    def n_averaged(self) -> int:
        """How many epochs' weights the average holds."""
        return 0 if self._average_model is None else int(self._average_model.n_averaged)

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: nn.Module) -> bool:
        return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in pl_module.modules())

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        from engineering import FSDPStrategy  # on first use: it imports torch.distributed

        if isinstance(trainer.strategy, FSDPStrategy):
            raise MisconfigurationError(
                f"StochasticWeightAveraging does not support {type(trainer.strategy).__name__}: it shards the model. "
                "Use strategy='ddp' or a single device."
            )
        self._average_model = AveragedModel(pl_module, device=self._device, avg_fn=self._avg_fn, use_buffers=False)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if len(trainer.optimizers) != 1:
            raise MisconfigurationError(
                f"StochasticWeightAveraging works with one optimizer; configure_optimizers returned "
                f"{len(trainer.optimizers)}."
            )
        if len(trainer.lr_scheduler_configs) > 1:
            raise MisconfigurationError(
                "StochasticWeightAveraging replaces the learning-rate scheduler, so it works with at most one; "
                f"configure_optimizers returned {len(trainer.lr_scheduler_configs)}."
            )
        if isinstance(self._swa_epoch_start, float):
            if trainer.max_epochs == -1:
                raise MisconfigurationError(
                    "StochasticWeightAveraging(swa_epoch_start=<float>) is a fraction of max_epochs, which is "
                    "unbounded here: give swa_epoch_start as an epoch number (int) or set Trainer(max_epochs=...)."
                )
            self._swa_epoch_start = int(trainer.max_epochs * self._swa_epoch_start)
        self._max_epochs = trainer.max_epochs

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch
        if not self.swa_start <= epoch <= self.swa_end:
            return
        if not self._initialized:
            self._start_annealing(trainer)
        if epoch > self._latest_update_epoch:  # a run resumed mid-epoch starts this epoch again: add it once
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = epoch

    def _start_annealing(self, trainer: Any) -> None:
        self._initialized = True
        optimizer = trainer.optimizers[0]
        if isinstance(self._swa_lrs, float):
            self._swa_lrs = [self._swa_lrs] * len(optimizer.param_groups)
        if len(self._swa_lrs) != len(optimizer.param_groups):
            raise MisconfigurationError(
                f"StochasticWeightAveraging got {len(self._swa_lrs)} swa_lrs for {len(optimizer.param_groups)} "
                "parameter groups: give one per group, or a single float."
            )
        for lr, group in zip(self._swa_lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        # SWALR's first step leaves the learning rate as it is; the annealing starts with the epoch's end.
        self._swa_scheduler = SWALR(
            optimizer, swa_lr=self._swa_lrs, anneal_epochs=self._annealing_epochs,
            anneal_strategy=self._annealing_strategy,
            last_epoch=trainer.max_epochs if self._annealing_strategy == "cos" else -1,
        )
        if self._restored_scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._restored_scheduler_state)
        swa_config = LRSchedulerConfig(self._swa_scheduler)
        if trainer.lr_scheduler_configs:
            self._replaced_config = trainer.lr_scheduler_configs[0]
            if self._replaced_config.interval != "epoch" or self._replaced_config.frequency != 1:
                print(f"StochasticWeightAveraging replaces {type(self._replaced_config.scheduler).__name__}, which "
                      "stepped other than once per epoch; SWALR steps once per epoch.")
            trainer.lr_scheduler_configs[0] = swa_config
        else:
            trainer.lr_scheduler_configs.append(swa_config)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._average_model is None or not (self._max_epochs == -1 or trainer.current_epoch - 1 == self.swa_end):
            return  # stopped before the last epoch: the weights stay those training reached, as in Lightning
        for average, current in zip(self._average_model.module.parameters(), pl_module.parameters()):
            current.detach().copy_(average.to(current.device))
        if self.pl_module_contains_batch_norm(pl_module):
            _recompute_batch_norm(trainer, pl_module)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        # SWALR's state is this callback's; the trainer's scheduler list holds the user's, so that a fresh run,
        # whose configure_optimizers knows nothing of SWALR, resumes from this checkpoint.
        if self._swa_scheduler is not None and "lr_schedulers" in checkpoint:
            replaced = self._replaced_config
            checkpoint["lr_schedulers"] = [] if replaced is None else [replaced.scheduler.state_dict()]

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_averaged": self.n_averaged,
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if self._average_model is None else self._average_model.module.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._restored_scheduler_state = state_dict["scheduler_state"]
        if self._average_model is None:
            raise RuntimeError("StochasticWeightAveraging state can only be loaded while fit runs (after setup).")
        if state_dict["average_model_state"] is not None:
            self._average_model.module.load_state_dict(state_dict["average_model_state"])
        self._average_model.n_averaged.fill_(state_dict["n_averaged"])


def _recompute_batch_norm(trainer: Any, pl_module: nn.Module) -> None:
    """Batch-norm running statistics for the averaged weights: a cumulative average over one pass of the
    training data, with the module in train mode and no gradients."""
    norms = [module for module in pl_module.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    momenta = {}
    for norm in norms:
        norm.reset_running_stats()
        momenta[norm], norm.momentum = norm.momentum, None  # None: a plain mean over all batches
    was_training = pl_module.training
    pl_module.train()
    device = pl_module.device
    try:
        with torch.no_grad():
            for batch_idx, batch in enumerate(trainer.train_dataloader):
                if batch_idx >= trainer.num_training_batches:
                    break
                inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
                pl_module(inputs.to(device))
    finally:
        for norm in norms:
            norm.momentum = momenta[norm]
        pl_module.train(was_training)
