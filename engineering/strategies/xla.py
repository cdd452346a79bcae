"""XLA (TPU, or the CPU with ``PJRT_DEVICE=CPU``) through torch_xla, one device per process.

torch_xla traces operations lazily; a graph runs at ``torch_xla.sync()``. Batches arrive through
torch_xla's ``MpDeviceLoader``, which moves them to the device in the background and syncs after each
batch; the optimizer step goes through ``xm.optimizer_step`` and syncs too, so every training step
runs as one compiled graph. Checkpoints go through ``xm.save``, which copies to the CPU and writes on
the master ordinal only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from engineering.strategies.single import SingleDeviceStrategy


class XLAStrategy(SingleDeviceStrategy):
    """A single XLA device; the step syncs the lazy graph."""

    name = "xla"
    supports_inference_mode = False  # XLA tensors cannot be inference tensors; evaluation uses no_grad

    def process_dataloader(self, loader: Iterable[Any]) -> Iterable[Any]:
        from torch_xla.distributed.parallel_loader import MpDeviceLoader

        if isinstance(loader, torch.utils.data.DataLoader):
            return MpDeviceLoader(loader, self.root_device)
        return loader

    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any], **kwargs: Any) -> Any:
        import torch_xla
        import torch_xla.core.xla_model as xm

        loss = self.precision.optimizer_step(_XLAStepping(optimizer, xm), closure, **kwargs)
        torch_xla.sync()
        return loss

    def write_checkpoint(self, checkpoint: dict[str, Any], file: Any) -> None:
        import torch_xla.core.xla_model as xm

        xm.save(checkpoint, file, master_only=True)


class _XLAStepping:
    """An optimizer whose ``step`` is ``xm.optimizer_step``: gradients reduced across replicas, then stepped."""

    def __init__(self, optimizer: torch.optim.Optimizer, xm: Any) -> None:
        self._optimizer, self._xm = optimizer, xm

    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        return self._xm.optimizer_step(self._optimizer, optimizer_args={"closure": closure, **kwargs})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._optimizer, name)
