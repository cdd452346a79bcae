"""ModelSummary: the table of layers and parameter counts printed when fit starts."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engineering import Callback


def _count(parameters: Any) -> tuple[int, int]:
    trainable = frozen = 0
    for parameter in parameters:
        if parameter.requires_grad:
            trainable += parameter.numel()
        else:
            frozen += parameter.numel()
    return trainable, frozen


def _shape(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    if isinstance(value, (list, tuple)):
        return str([_shape(item) for item in value])
    return "?"


class ModelSummary(Callback):
    """Layers down to ``max_depth`` with type, parameters, mode, and shapes when ``example_input_array`` is set."""

    def __init__(self, max_depth: int = 1) -> None:
        if max_depth < -1:
            raise ValueError(f"max_depth={max_depth} must be -1 (all layers), 0 (totals only) or more.")
        self.max_depth = max_depth

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and self.max_depth != 0:
            print(self.summarize(pl_module))

    def summarize(self, module: nn.Module) -> str:
        layers = [(name, layer) for name, layer in module.named_modules()
                  if name and (self.max_depth == -1 or name.count(".") < self.max_depth)]
        shapes = self._shapes(module, layers)
        header = ["", "Name", "Type", "Params", "Mode"] + (["In sizes", "Out sizes"] if shapes else [])
        rows = []
        for index, (name, layer) in enumerate(layers):
            trainable, frozen = _count(layer.parameters())
            row = [str(index), name, type(layer).__name__, _human(trainable + frozen),
                   "train" if layer.training else "eval"]
            if shapes:
                row += list(shapes.get(name, ("?", "?")))
            rows.append(row)
        trainable, frozen = _count(module.parameters())
        size_mb = sum(p.numel() * p.element_size() for p in module.parameters()) / 1e6
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        rule = "-" * (sum(widths) + 3 * (len(widths) - 1))
        lines = [" | ".join(cell.ljust(width) for cell, width in zip(header, widths)), rule]
        lines += [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
        lines += [
            rule,
            f"{_human(trainable):<8} Trainable params",
            f"{_human(frozen):<8} Non-trainable params",
            f"{_human(trainable + frozen):<8} Total params",
            f"{size_mb:<8.3f} Total estimated model params size (MB)",
        ]
        return "\n".join(lines)

    @staticmethod
    def _shapes(module: nn.Module, layers: list[tuple[str, nn.Module]]) -> dict[str, tuple[str, str]]:
        example = getattr(module, "example_input_array", None)
        if example is None:
            return {}
        shapes: dict[str, tuple[str, str]] = {}

        def recorder(name: str) -> Any:
            def record(_: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
                shapes.setdefault(name, (_shape(list(inputs)), _shape(output)))

            return record

        handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers]
        was_training = module.training
        try:
            module.eval()
            with torch.no_grad():
                device_example = example.to(module.device) if isinstance(example, torch.Tensor) else example
                module(*device_example) if isinstance(device_example, tuple) else module(device_example)
        finally:
            module.train(was_training)
            for handle in handles:
                handle.remove()
        return shapes


def _human(count: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return str(count)
