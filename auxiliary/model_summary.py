"""ModelSummary: the table of layers and parameter counts printed when fit starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from engineering import Callback


@dataclass
class LayerSummary:
    """One row of the table: a submodule and what it holds."""

    name: str
    type: str
    parameters: int
    mode: str                   # "train" or "eval"
    in_sizes: str = "?"         # "?" when the example forward pass never called the layer
    out_sizes: str = "?"
    flops: int = 0


@dataclass
class Summary:
    """What the table shows, as numbers; ``str()`` is the table.

    The sizes and FLOPs columns, and the FLOPs total, appear only when the module has an
    ``example_input_array`` to run (``with_example``). ``other_parameters`` counts the parameters of the
    module that no listed layer holds (the root's own ``nn.Parameter``s, for instance).
    """

    layers: list[LayerSummary] = field(default_factory=list)
    trainable_parameters: int = 0
    non_trainable_parameters: int = 0
    other_parameters: int = 0
    size_mb: float = 0.0
    modules_in_train_mode: int = 0
    modules_in_eval_mode: int = 0
    with_example: bool = False
    total_flops: int = 0

    @property
    def total_parameters(self) -> int:
        """Trainable and non-trainable parameters together."""
        return self.trainable_parameters + self.non_trainable_parameters

    def __str__(self) -> str:
        example_columns = ["FLOPs", "In sizes", "Out sizes"] if self.with_example else []
        header = ["", "Name", "Type", "Params", "Mode"] + example_columns
        rows = []
        for index, layer in enumerate(self.layers):
            row = [str(index), layer.name, layer.type, abbreviated(layer.parameters), layer.mode]
            example = [abbreviated(layer.flops), layer.in_sizes, layer.out_sizes]
            rows.append(row + (example if self.with_example else []))
        if self.other_parameters:
            rows.append(["", "other params", "n/a", abbreviated(self.other_parameters)] + ["n/a"] * (len(header) - 4))
        widths = [max(len(row[column]) for row in [header] + rows) for column in range(len(header))]
        rule = "-" * (sum(widths) + 3 * (len(widths) - 1))
        lines = [" | ".join(cell.ljust(width) for cell, width in zip(header, widths)).rstrip(), rule]
        lines += [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        totals = [
            (f"{self.trainable_parameters:,}", "Trainable params"),
            (f"{self.non_trainable_parameters:,}", "Non-trainable params"),
            (f"{self.total_parameters:,}", "Total params"),
            (f"{self.size_mb:,.3f}", "Total estimated model params size (MB)"),
            (str(self.modules_in_train_mode), "Modules in train mode"),
            (str(self.modules_in_eval_mode), "Modules in eval mode"),
        ]
        if self.with_example:
            totals.append((abbreviated(self.total_flops), "Total Flops"))
        width = max(10, max(len(value) for value, _ in totals) + 1)
        return "\n".join(lines + [rule] + [value.ljust(width) + label for value, label in totals])


class ModelSummary(Callback):
    """Prints the module's layers down to ``max_depth`` when fit starts (on global rank 0).

    The table has Lightning 2.6's columns and totals: name, type, parameters and train/eval mode per
    layer; with ``example_input_array`` set on the module, one forward pass in eval mode (under
    ``torch.no_grad`` and ``torch.utils.flop_counter.FlopCounterMode``) adds each layer's FLOPs, input
    and output sizes, and the total FLOPs. "Modules in train mode" and "in eval mode" count every
    submodule, not the module itself. Parameter totals are exact (``23,802``), not abbreviated.

    Args:
        max_depth: How deep to list layers: ``1`` the module's children, ``-1`` every layer, ``0`` prints
            nothing.

    Raises:
        ValueError: ``max_depth`` is not ``-1``, ``0`` or a positive int.

    Example:
        ```python
        print(ModelSummary(max_depth=-1).summarize(model))
        ```
    """

    def __init__(self, max_depth: int = 1) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < -1:
            raise ValueError(f"max_depth={max_depth!r} must be -1 (all layers), 0 (no summary) or a positive int.")
        self.max_depth = max_depth

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and self.max_depth != 0:
            print(self.summarize(pl_module))

    def summarize(self, module: nn.Module) -> Summary:
        """The summary of ``module`` at this callback's depth.

        Args:
            module: Any ``nn.Module``; its ``example_input_array``, if set, runs once through it.

        Returns:
            The numbers of the table; ``str()`` of it is the table.
        """
        layers = [(name, layer) for name, layer in module.named_modules()
                  if name and (self.max_depth == -1 or name.count(".") < self.max_depth)]
        example = _ExampleForward.run(module, layers)
        summary = Summary(with_example=example is not None)
        for name, layer in layers:
            trainable, frozen = _count(layer.parameters())
            in_sizes, out_sizes = example.sizes.get(name, ("?", "?")) if example else ("?", "?")
            summary.layers.append(LayerSummary(name, type(layer).__name__, trainable + frozen,
                                               "train" if layer.training else "eval", in_sizes, out_sizes,
                                               example.flops.get(name, 0) if example else 0))
        summary.trainable_parameters, summary.non_trainable_parameters = _count(module.parameters())
        listed = {id(parameter) for _, layer in layers for parameter in layer.parameters()}
        summary.other_parameters = sum(_numel(p) for p in module.parameters() if id(p) not in listed)
        summary.size_mb = sum(_numel(p) * p.element_size() for p in module.parameters()) / 1e6
        modes = [submodule.training for submodule in module.modules()][1:]  # the module itself is no layer
        summary.modules_in_train_mode = sum(modes)
        summary.modules_in_eval_mode = len(modes) - sum(modes)
        if example is not None:
            summary.total_flops = example.total_flops
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


@dataclass
class _ExampleForward:
    """What one forward pass of ``example_input_array`` tells about each layer."""

    sizes: dict[str, tuple[str, str]]   # layer name → (input sizes, output sizes)
    flops: dict[str, int]               # layer name → FLOPs of its forward, its sublayers included
    total_flops: int

    @classmethod
    def run(cls, module: nn.Module, layers: list[tuple[str, nn.Module]]) -> _ExampleForward | None:
        """The pass, in eval mode and without gradients; ``None`` when the module has no example input."""
        example = getattr(module, "example_input_array", None)
        if example is None:
            return None
        from torch.utils.flop_counter import FlopCounterMode  # imported only for a summary that counts

        sizes: dict[str, tuple[str, str]] = {}

        def recorder(name: str) -> Any:
            def record(_: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
                only = inputs[0] if len(inputs) == 1 else list(inputs)
                sizes.setdefault(name, (_size(only), _size(output)))

            return record

        handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers]
        device = next(module.parameters(), torch.empty(0)).device
        modes = [(submodule, submodule.training) for submodule in module.modules()]  # layers may differ from the root
        counter = FlopCounterMode(display=False)
        try:
            module.eval()
            with torch.no_grad(), counter:
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
        # The counter names a layer by the root's class and the layer's dotted path: "Net.encoder.0".
        counts = counter.get_flop_counts()
        root = type(module).__name__
        flops = {name: sum(counts.get(f"{root}.{name}", {}).values()) for name, _ in layers}
        return cls(sizes, flops, counter.get_total_flops())


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _size(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_size(item) for item in value) + "]"
    return "?"


def abbreviated(count: int) -> str:
    """Lightning's short form: ``800``, ``1.6 K``, ``21.9 K``, ``216 K``, ``2.6 M``."""
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if count >= scale:
            value = count / scale
            return f"{int(value):,} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    return str(count)
