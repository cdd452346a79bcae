"""Moving a batch to the device: the module's (or datamodule's) transfer hooks, then the precision's input cast."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engineering.bus.callback import overrides
from research import LightningDataModule, LightningModule

_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def batch_mover(trainer: Any) -> Callable[[Any, int], Any]:
    """The function a loop moves each batch with: on_before_batch_transfer → transfer_batch_to_device →
    on_after_batch_transfer → the precision's input cast. The datamodule's hooks win where it defines them.

    On CPU in full precision with no hook overridden, every step of that is a no-op: ``unchanged``.
    """
    module = trainer.lightning_module
    datamodule = trainer.datamodule
    before = after = module
    if datamodule is not None:
        if overrides(type(datamodule), LightningDataModule, "on_before_batch_transfer"):
            before = datamodule
        if overrides(type(datamodule), LightningDataModule, "on_after_batch_transfer"):
            after = datamodule
    strategy = trainer.strategy
    customised = before is datamodule or after is datamodule or any(
        overrides(type(module), LightningModule, hook) for hook in _TRANSFER_HOOKS
    )
    if not customised and strategy.root_device.type == "cpu" and not strategy.precision.casts_input:
        return unchanged

    def move(batch: Any, dataloader_idx: int) -> Any:
        batch = before.on_before_batch_transfer(batch, dataloader_idx)
        batch = module.transfer_batch_to_device(batch, strategy.root_device, dataloader_idx)
        batch = after.on_after_batch_transfer(batch, dataloader_idx)
        return strategy.precision.convert_input(batch)

    return move


def unchanged(batch: Any, dataloader_idx: int) -> Any:
    return batch
