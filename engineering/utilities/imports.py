"""Whether optional packages are installed, under the names Lightning programs test
(``from lightning.pytorch.utilities.imports import _TORCHVISION_AVAILABLE``). Found without importing them."""

from __future__ import annotations

from importlib.util import find_spec

_TORCHVISION_AVAILABLE = find_spec("torchvision") is not None
_OMEGACONF_AVAILABLE = find_spec("omegaconf") is not None
_RICH_AVAILABLE = find_spec("rich") is not None
