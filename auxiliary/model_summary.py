"""ModelSummary: the table of layers and parameter counts printed when fit starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from engineering import Callback


@dataclass
class LayerSummary:
    name: str
    type: str
    parameters: int
    mode: str                   # "train" or "eval"
    in_sizes: str = "?"
    out_sizes: str = "?"


@dataclass
class Summary:
    """What the table shows, as numbers; ``str()`` is the table."""

    layers: list[LayerSummary] = field(default_factory=list)
    trainable_parameters: int = 0
    non_trainable_parameters: int = 0
    size_mb: float = 0.0
    modules_in_train_mode: int = 0
    modules_in_eval_mode: int = 0
    with_sizes: bool = False

    @property
    def total_parameters(self) -> int:
        return self.trainable_parameters + self.non_trainable_parameters

    def __str__(self) -> str:
        header = ["", "Name", "Type", "Params", "Mode"] + (["In sizes", "Out sizes"] if self.with_sizes else [])
        rows = []
        for index, layer in enumerate(self.layers):
            row = [str(index), layer.name, layer.type, abbreviated(layer.parameters), layer.mode]
            rows.append(row + ([layer.in_sizes, layer.out_sizes] if self.with_sizes else []))
        widths = [max(len(row[column]) for row in [header] + rows) for column in range(len(header))]
        rule = "-" * (sum(widths) + 3 * (len(widths) - 1))
        lines = [" | ".join(cell.ljust(width) for cell, width in zip(header, widths)), rule]
        lines += [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
        totals = [
            (f"{self.trainable_parameters:,}", "Trainable params"),
            (f"{self.non_trainable_parameters:,}", "Non-trainable params"),
            (f"{self.total_parameters:,}", "Total params"),
            (f"{self.size_mb:,.3f}", "Total estimated model params size (MB)"),
            (str(self.modules_in_train_mode), "Modules in train mode"),
            (str(self.modules_in_eval_mode), "Modules in eval mode"),
        ]
        width = max(10, max(len(value) for value, _ in totals) + 1)
        return "\n".join(lines + [rule] + [value.ljust(width) + label for value, label in totals])


class ModelSummary(Callback):
    """Prints the module's layers down to ``max_depth`` when fit starts (on global rank 0).

    ``max_depth=0`` prints nothing, ``-1`` every layer. With ``example_input_array`` set on the module,
    one forward pass in eval mode adds each layer's input and output sizes.
    """

    def __init__(self, max_depth: int = 1) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < -1:
            raise ValueError(f"max_depth={max_depth!r} must be -1 (all layers), 0 (no summary) or a positive int.")
        self.max_depth = max_depth

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and self.max_depth != 0:
            print(self.summarize(pl_module))

    def summarize(self, module: nn.Module) -> Summary:
        """The summary of ``module`` at this callback's depth."""
        layers = [(name, layer) for name, layer in module.named_modules()
                  if name and (self.max_depth == -1 or name.count(".") < self.max_depth)]
        sizes = _sizes(module, layers)
        summary = Summary(with_sizes=bool(sizes))
        for name, layer in layers:
            trainable, frozen = _count(layer.parameters())
            summary.layers.append(LayerSummary(name, type(layer).__name__, trainable + frozen,
                                               "train" if layer.training else "eval", *sizes.get(name, ("?", "?"))))
        summary.trainable_parameters, summary.non_trainable_parameters = _count(module.parameters())
        summary.size_mb = sum(_numel(p) * p.element_size() for p in module.parameters()) / 1e6
        modes = [submodule.training for submodule in module.modules()]
        summary.modules_in_train_mode = sum(modes)
        summary.modules_in_eval_mode = len(modes) - sum(modes)
        return summary


def _numel(parameter: torch.Tensor) -> int:
    # A lazy module's parameters have no size until its first forward pass.
    return 0 if isinstance(parameter, nn.parameter.UninitializedParameter) else parameter.numel()


def _count(parameters: Any) -> tuple[int, int]:
    trainable = frozen = 0
    for parameter in parameters:
        if parameter.requires_grad:
            trainable += _numel(parameter)
        else:
            frozen += _numel(parameter)
    return trainable, frozen


def _sizes(module: nn.Module, layers: list[tuple[str, nn.Module]]) -> dict[str, tuple[str, str]]:
    """Each layer's (input sizes, output sizes) in one forward pass of ``example_input_array``; {} without it."""
    example = getattr(module, "example_input_array", None)
    if example is None:
        return {}
    sizes: dict[str, tuple[str, str]] = {}

    def recorder(name: str) -> Any:
        def record(_: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            only = inputs[0] if len(inputs) == 1 else list(inputs)
            sizes.setdefault(name, (_size(only), _size(output)))

        return record

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers]
    device = next(module.parameters(), torch.empty(0)).device
    modes = [(submodule, submodule.training) for submodule in module.modules()]  # layers may differ from the root
    try:
        module.eval()
        with torch.no_grad():
            if isinstance(example, (list, tuple)):
                module(*(_to(item, device) for item in example))
            elif isinstance(example, dict):
                module(**{key: _to(item, device) for key, item in example.items()})
            else:
                module(_to(example, device))
    finally:
        for submodule, training in modes:
            submodule.training = training
        for handle in handles:
            handle.remove()
    return sizes


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _size(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_size(item) for item in value) + "]"
    return "?"


def abbreviated(count: int) -> str:
    """A parameter count as the table shows it: 1.2 K, 3.4 M, ..."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return str(count)
