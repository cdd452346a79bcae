"""``get_torchvision_model``, which Lightning's examples import from ``lightning.pytorch.utilities.model_helpers``."""

from __future__ import annotations

from typing import Any

from torch import nn

from engineering.utilities.imports import _TORCHVISION_AVAILABLE


def get_torchvision_model(model_name: str, **kwargs: Any) -> nn.Module:
    """``torchvision.models.get_model(model_name, **kwargs)``: e.g. ``get_torchvision_model("resnet18", weights=None)``."""
    if not _TORCHVISION_AVAILABLE:
        raise ModuleNotFoundError(f"get_torchvision_model({model_name!r}) needs torchvision: pip install torchvision")
    from torchvision import models  # imported on use: torchvision takes seconds to load

    return models.get_model(model_name, **kwargs)
