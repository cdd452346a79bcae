"""Seeding every random number generator a run touches."""

from __future__ import annotations

import os
import random

import torch

_MAX_SEED = 2**32 - 1


def seed_everything(seed: int | None = None, workers: bool = False) -> int:
    """Seed python, numpy (when installed) and torch (all devices); return the seed used.

    With ``workers=True`` DataLoader workers get distinct, reproducible seeds derived from it.
    The seed is also put in ``PL_GLOBAL_SEED`` so that processes started later agree on it.
    """
    if seed is None:
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    if not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed={seed!r} must be an int in [0, {_MAX_SEED}].")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PL_SEED_WORKERS"] = str(int(workers))
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        pass
    else:
        numpy.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    return seed
