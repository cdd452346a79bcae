"""Fit → checkpoint mid-run → a fresh Trainer resumes with ckpt_path: shared by the callbacks' resume tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engineering import ModelCheckpoint, Trainer
from tests.helpers import QUIET

FLAGS = {**QUIET, "enable_checkpointing": True, "num_sanity_val_steps": 0}


def fit(make_module: Callable[[], Any], make_callbacks: Callable[[], list], make_loader: Callable[[], Any],
        root: Path, ckpt_path: str | None = None, **flags: Any) -> tuple[Trainer, Any]:
    """One run that writes a checkpoint after every optimizer step into ``root``, named ``step=N.ckpt``."""
    saver = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    module = make_module()
    trainer = Trainer(callbacks=[*make_callbacks(), saver], default_root_dir=root, **{**FLAGS, **flags})
    trainer.fit(module, make_loader(), ckpt_path=ckpt_path)
    return trainer, module


def resumed_equals_uninterrupted(make_module, make_callbacks, make_loader, root: Path, step: int,
                                 **flags: Any) -> tuple[Any, Any]:
    """The module after an uninterrupted run and after one resumed from its step-``step`` checkpoint; their
    optimizers' learning rates must be equal too."""
    whole_trainer, whole = fit(make_module, make_callbacks, make_loader, root, **flags)
    kept = root / "kept.ckpt"  # the resumed run rewrites the step files in the same directory
    (root / f"step={step}.ckpt").rename(kept)
    resumed_trainer, resumed = fit(make_module, make_callbacks, make_loader, root, ckpt_path=str(kept), **flags)
    assert _learning_rates(resumed_trainer) == _learning_rates(whole_trainer)
    return whole, resumed


def assert_same_weights(first: torch.nn.Module, second: torch.nn.Module) -> None:
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def _learning_rates(trainer: Trainer) -> list[float]:
    return [group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups]
