"""``Strategy``, the base of every strategy: where the module lives, how backward and the optimizer step run,
the collectives. As it stands it runs one process on one device, which is all ``SingleDeviceStrategy`` adds a
name to; distributed strategies override placement and the collectives.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from engineering import events
from engineering.optimization.precision import Precision
from research.checkpoint_io import load_weights


class Strategy:
    """Runs everything on ``device``; the collectives are identities. Subclass it for a strategy of your own."""

    distributed = False
    spawns_processes = False
    supports_inference_mode = True

    def __init__(self, device: torch.device | str | None = None, precision: Precision | None = None) -> None:
        self.root_device = torch.device(device) if device is not None else torch.device("cpu")
        self.precision = precision if precision is not None else Precision()
        self.trainer: Any = None

    def connect(self, device: torch.device, precision: Precision, **placement: Any) -> None:
        """Take the device and precision the Trainer's flags chose (a user-made strategy has neither yet)."""
        self.root_device, self.precision = device, precision

    # -- who am I ------------------------------------------------------------------------------
    world_size = 1
    global_rank = 0
    local_rank = 0
    node_rank = 0

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    # -- placement -----------------------------------------------------------------------------
    def setup_module(self, module: nn.Module) -> nn.Module:
        module = self.precision.convert_module(module)
        return module.to(self.root_device)

    def setup_environment(self) -> None:
        """Start processes and join process groups; nothing to do for one process."""

    def process_dataloader(self, loader: Any) -> Any:
        """The iterable a loop reads batches from; XLA wraps loaders to move batches in the background."""
        return loader

    def module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """The weights a checkpoint holds; sharded strategies gather them first."""
        return module.state_dict()

    def optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_module_state_dict(self, module: nn.Module, state: dict[str, Any]) -> None:
        load_weights(module, state)

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        optimizer.load_state_dict(state)

    def write_checkpoint(self, checkpoint: dict[str, Any], file: Any) -> None:
        """Serialize ``checkpoint`` into an open binary file."""
        torch.save(checkpoint, file)

    # -- one optimization step ------------------------------------------------------------------
    def training_step_callable(self) -> Callable[..., Any]:
        """What runs training_step: the module's own method; distributed strategies route it through their wrapper."""
        return self.trainer.lightning_module.training_step

    def block_gradient_sync(self) -> contextlib.AbstractContextManager:
        """Inside an accumulation window: skip the gradient all-reduce (a no-op for one process)."""
        return _NO_CONTEXT

    def backward(self, loss: torch.Tensor, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        """Manual optimization's backward: scale the loss (mixed precision) → on_before_backward →
        module.backward → on_after_backward. (Automatic optimization runs the same in ``loop/fit.py``.)"""
        hooks = self.trainer.hooks
        loss = self.precision.scale_loss(loss)  # hooks see the loss backward really gets, as in Lightning
        hooks(events.on_before_backward, loss=loss)
        self.trainer.lightning_module.backward(loss, *args, **kwargs)
        hooks(events.on_after_backward)

    def clip_gradients(
        self, optimizer: torch.optim.Optimizer, clip_val: float | None, algorithm: str | None
    ) -> None:
        if not clip_val:
            return
        self.precision.unscale_gradients(optimizer)  # clip what the optimizer will really apply
        parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if algorithm == "value":
            torch.nn.utils.clip_grad_value_(parameters, clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, clip_val)

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any], **kwargs: Any) -> Any:
        return self.precision.optimizer_step(optimizer, closure, **kwargs)

    def stepper(self, optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
        """What steps ``optimizer`` once the closure's work is done: its own ``step`` when neither this strategy
        nor its precision adds anything to it (two calls fewer per step), else ``optimizer_step`` without closure."""
        adds_nothing = (type(self).optimizer_step is Strategy.optimizer_step
                        and type(self.precision).optimizer_step is Precision.optimizer_step)
        if adds_nothing:
            return optimizer.step
        return functools.partial(self.optimizer_step, optimizer, None)

    # -- collectives, for code that must also run distributed ------------------------------------
    def barrier(self, name: str | None = None) -> None: ...

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def all_gather(self, tensor: torch.Tensor, group: Any = None, sync_grads: bool = False) -> torch.Tensor:
        return tensor

    def reduce(self, tensor: torch.Tensor, reduce_op: str = "mean") -> torch.Tensor:
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def teardown(self) -> None: ...

    def close(self, failed: bool) -> None:
        """After a failed run: stop the processes this one started and leave the process group."""

    def explain_failure(self, error: BaseException) -> BaseException:
        """The error to show for ``error``; distributed strategies say which rank stopped answering."""
        return error


class SingleDeviceStrategy(Strategy):
    """One process on one device: ``Strategy`` as it is, under Lightning's name."""

    name = "single_device"


_NO_CONTEXT = contextlib.nullcontext()
