"""Exporting a LightningModule: TorchScript and ONNX, as Lightning's ``to_torchscript`` and ``to_onnx`` do."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

# torch.jit.script compiles a module's properties too; these read the Trainer or state TorchScript cannot type.
JIT_UNUSED_PROPERTIES = [
    "trainer", "has_trainer", "current_epoch", "global_step", "global_rank", "local_rank", "logger", "loggers",
    "device", "dtype", "on_gpu", "hparams", "hparams_initial",
]
_scripting_depth = 0


def scripting() -> bool:
    """Whether ``to_torchscript`` is inspecting a module: its ``trainer`` then reads None instead of raising, since
    TorchScript reads every attribute of the module's class, and a module being exported may have no Trainer."""
    return _scripting_depth > 0


@contextlib.contextmanager
def _inspected_by_torchscript() -> Iterator[None]:
    global _scripting_depth
    _scripting_depth += 1
    try:
        yield
    finally:
        _scripting_depth -= 1


class ExportMixin:
    """``to_torchscript`` and ``to_onnx`` for LightningModule; the example input goes through the module's batch
    transfer hooks to its device first, as in Lightning."""

    __jit_unused_properties__ = JIT_UNUSED_PROPERTIES

    @torch.no_grad()
    def to_torchscript(
        self, file_path: str | Path | None = None, method: str | None = "script", example_inputs: Any = None,
        **kwargs: Any,
    ) -> Any:
        """The module scripted (``method="script"``) or traced (``"trace"``, with ``example_inputs`` or
        ``example_input_array``) in eval mode; saved with ``torch.jit.save`` when ``file_path`` is given."""
        if method not in ("script", "trace"):
            raise ValueError(f"The 'method' parameter only supports 'script' or 'trace', but value given was: {method}")
        training = self.training
        try:
            with _inspected_by_torchscript():
                if method == "script":
                    exported = torch.jit.script(self.eval(), **kwargs)
                else:
                    inputs = self._example_input(example_inputs, "to_torchscript(method='trace') needs `example_inputs`")
                    exported = torch.jit.trace(func=self.eval(), example_inputs=inputs, **kwargs)
        finally:
            self.train(training)
        if file_path is not None:
            torch.jit.save(exported, str(file_path))
        return exported

    @torch.no_grad()
    def to_onnx(self, file_path: str | Path | Any = None, input_sample: Any = None, **kwargs: Any) -> Any:
        """``torch.onnx.export`` of the module with ``input_sample`` (or ``example_input_array``); needs ``onnx``."""
        try:
            import onnx  # noqa: F401  (torch.onnx.export needs it; imported only when exporting)
        except ModuleNotFoundError as missing:
            raise ModuleNotFoundError(f"`{type(self).__name__}.to_onnx()` requires `onnx` to be installed.") from missing
        training = self.training
        inputs = self._example_input(input_sample, "to_onnx needs `input_sample`")
        try:
            return torch.onnx.export(self, inputs, str(file_path) if isinstance(file_path, Path) else file_path, **kwargs)
        finally:
            self.train(training)

    def _example_input(self, given: Any, needs: str) -> Any:
        example = given if given is not None else self.example_input_array
        if example is None:
            raise ValueError(f"{needs} or `model.example_input_array` to be set.")
        example = self.on_before_batch_transfer(example, 0)
        example = self.transfer_batch_to_device(example, self.device, 0)
        return self.on_after_batch_transfer(example, 0)
