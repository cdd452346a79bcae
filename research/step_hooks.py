"""What the Trainer calls around a training step, on the module: optimization, truncated backpropagation
through time, and moving batches to the device. ``LightningModule`` inherits it; override any of it there."""

from __future__ import annotations

from typing import Any

import torch

from research.nested import apply_to_collection, collection_values, move_to_device


class StepHooks:
    """The optimization, time-splitting and batch-transfer methods of ``LightningModule``."""

    # -- Optimization: override to customise, call in manual optimization --------------------
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizers from ``configure_optimizers``, for manual optimization.

        Args:
            use_pl_optimizer: Wrap each in a ``LightningOptimizer``, whose ``step`` runs the precision's
                scaling and the step hooks; ``False`` gives the torch optimizers themselves.

        Returns:
            The optimizer, or a list when there are several.
        """
        optimizers = self.trainer.lightning_optimizers if use_pl_optimizer else self.trainer.optimizers
        return optimizers[0] if len(optimizers) == 1 else optimizers

    def lr_schedulers(self) -> Any:
        """The schedulers from ``configure_optimizers``: one, a list of several, or ``None``."""
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        if not schedulers:
            return None
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """``loss.backward()`` for manual optimization, with the precision's loss scaling and the backward
        hooks; use it instead of calling ``backward`` yourself.

        Args:
            loss: The tensor to differentiate.
            *args: Passed on to ``backward`` (``retain_graph=True``, ...).
            **kwargs: Passed on to ``backward``.

        Raises:
            RuntimeError: ``automatic_optimization`` is still ``True``.
        """
        if self.automatic_optimization:
            raise RuntimeError(
                "manual_backward is for manual optimization. "
                "Set `self.automatic_optimization = False` in __init__ to use it."
            )
        self.trainer.strategy.backward(loss, None, *args, **kwargs)

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """``loss.backward()``; override to change how gradients are computed."""
        loss.backward(*args, **kwargs)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """Zero the gradients (``set_to_none=True``) at the start of each accumulation window."""
        optimizer.zero_grad(set_to_none=True)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Step ``optimizer``; override for e.g. a learning-rate warm-up, and call
        ``optimizer.step(closure=optimizer_closure)``: the closure runs the forward and backward pass.

        Args:
            epoch: The current epoch.
            batch_idx: The batch within the epoch.
            optimizer: The optimizer (a ``LightningOptimizer``).
            optimizer_closure: Runs ``training_step``, ``backward`` and the hooks around them.
        """
        optimizer.step(closure=optimizer_closure)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Step ``scheduler``, with the monitored ``metric`` for ``ReduceLROnPlateau``; override for a
        scheduler with another ``step`` signature."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the gradients before each optimizer step; by default with the Trainer's
        ``gradient_clip_val`` and ``gradient_clip_algorithm``. Override to clip differently."""
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def clip_gradients(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip ``optimizer``'s gradients (already unscaled under mixed precision).

        Args:
            optimizer: The optimizer whose parameters' gradients to clip.
            gradient_clip_val: The threshold; ``None`` or 0 does nothing.
            gradient_clip_algorithm: ``"norm"`` (the default) or ``"value"``.
        """
        self.trainer.strategy.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def toggle_optimizer(self, optimizer: Any) -> None:
        """Freeze every parameter that ``optimizer`` does not own (a GAN's other network)."""
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self._toggled_requires_grad = {}
        for parameter in self.parameters():
            self._toggled_requires_grad[id(parameter)] = parameter.requires_grad
            if id(parameter) not in owned:
                parameter.requires_grad_(False)

    def untoggle_optimizer(self, optimizer: Any) -> None:
        """Give back the ``requires_grad`` flags that ``toggle_optimizer`` changed."""
        previous = getattr(self, "_toggled_requires_grad", {})
        for parameter in self.parameters():
            if id(parameter) in previous:
                parameter.requires_grad_(previous[id(parameter)])
        self._toggled_requires_grad = {}

    # -- Truncated backpropagation through time ------------------------------------------------
    def tbptt_split_batch(self, batch: Any, split_size: int) -> list[Any]:
        """Split every tensor of ``batch`` along dim 1 (time) into chunks of ``split_size``."""
        lengths = {t.shape[1] for t in collection_values(batch, torch.Tensor) if t.dim() > 1}
        if not lengths:
            return [batch]
        total = max(lengths)
        return [_slice_time(batch, start, start + split_size) for start in range(0, total, split_size)]

    # -- Moving batches to the device ---------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change a batch on the CPU, before it moves to the device.

        Returns:
            The batch to move.
        """
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move every tensor in ``batch`` (through lists, tuples, dicts and dataclasses) to ``device``;
        override for a batch type of your own.

        Returns:
            The batch on ``device``.
        """
        return move_to_device(batch, device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change a batch on the device, e.g. GPU augmentation.

        Returns:
            The batch the step receives.
        """
        return batch


def _slice_time(batch: Any, start: int, stop: int) -> Any:
    def cut(tensor: torch.Tensor) -> torch.Tensor:
        return tensor[:, start:stop] if tensor.dim() > 1 else tensor

    return apply_to_collection(batch, torch.Tensor, cut)
