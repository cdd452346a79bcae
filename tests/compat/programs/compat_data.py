"""Synthetic data the compat programs share: seeded, in memory, the same under any framework."""

from __future__ import annotations

import sys

import torch
from torch.utils.data import TensorDataset


def blobs(samples: int = 96, features: int = 8, classes: int = 3, seed: int = 7) -> TensorDataset:
    """Gaussian clusters, one per class: a classification task a small MLP learns in a few epochs."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    centers = torch.randn(classes, features, generator=generator) * 2
    inputs = centers[labels] + torch.randn(samples, features, generator=generator)
    return TensorDataset(inputs, labels)


def curve(samples: int = 64, seed: int = 3) -> TensorDataset:
    """y = sin(3x) + noise: a regression task."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(samples, 1, generator=generator) * 2 - 1
    return TensorDataset(inputs, torch.sin(3 * inputs) + 0.05 * torch.randn(samples, 1, generator=generator))


def save_outcome(model: torch.nn.Module, metrics: dict, extra: dict | None = None) -> None:
    """What the comparison reads: the weights, the callback metrics as floats, and anything else named."""
    outcome = {
        "state_dict": {key: value.detach().clone() for key, value in model.state_dict().items()},
        "metrics": {key: float(value) for key, value in sorted(metrics.items())},
        **(extra or {}),
    }
    torch.save(outcome, sys.argv[1])
