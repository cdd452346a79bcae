"""Fully sharded data parallel (FSDP2, ``torch.distributed.fsdp.fully_shard``): each rank holds a shard of
every parameter, gradient and optimizer state; the full tensors exist only while a layer computes.

Processes are laid out as for DDP (self-launch, torchrun, SLURM, spawn). Checkpoints hold the full,
consolidated state (gathered to the CPU of rank 0, which writes the file), so they load anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions, get_model_state_dict, get_optimizer_state_dict, set_model_state_dict, set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard

from engineering.strategies.ddp import DDPStrategy, _StepDispatcher
from engineering.strategies.single import Strategy

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class FSDPStrategy(DDPStrategy):
    """Shard each module whose type is in ``auto_wrap_policy`` as its own unit, then the whole model."""

    name = "fsdp"

    def __init__(self, auto_wrap_policy: Iterable[type[nn.Module]] = (), **process_options: Any) -> None:
        super().__init__(**process_options)
        self.auto_wrap_policy = tuple(auto_wrap_policy)

    def setup_module(self, module: nn.Module) -> nn.Module:
        module = Strategy.setup_module(self, module)
        if self.sync_batchnorm:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if self.auto_wrap_policy:
            for submodule in module.modules():
                if isinstance(submodule, self.auto_wrap_policy):
                    fully_shard(submodule)
        # The root unit wraps the step dispatcher, so its pre-forward hook gathers the remaining parameters
        # before training_step runs, whatever the step calls.
        self.model = _StepDispatcher(module)
        fully_shard(self.model)
        return module

    def block_gradient_sync(self) -> contextlib.AbstractContextManager:
        return self._without_gradient_sync()

    @contextlib.contextmanager
    def _without_gradient_sync(self) -> Iterator[None]:
        self.model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.model.set_requires_gradient_sync(True)

    # -- consolidated checkpoints: collectives, so every rank calls them; rank 0 gets the tensors ----------
    def module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        return get_model_state_dict(module, options=_FULL)

    def optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return get_optimizer_state_dict(self.model, optimizer, options=_FULL)

    def load_module_state_dict(self, module: nn.Module, state: dict[str, Any]) -> None:
        set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True))

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        set_optimizer_state_dict(self.model, optimizer, state, options=StateDictOptions(full_state_dict=True))
