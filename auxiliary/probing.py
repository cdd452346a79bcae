"""What the tuners share: short probe runs on a Trainer of their own, and the attribute a found value goes to."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import torch

from engineering import Callback, MisconfigurationError, Trainer


def probe_trainer(trainer: Trainer, callbacks: list[Callback], **limits: Any) -> Trainer:
    """A Trainer on ``trainer``'s device with its numerics (precision, accumulation, clipping, determinism) and
    nothing else: no logger, checkpoints, progress bar, summary, nor sanity check.
    ``limits`` (max_steps, limit_train_batches, …) say how long a probe runs."""
    if trainer.world_size > 1:
        raise MisconfigurationError(
            "The tuners run on one device; this Trainer runs several processes. Tune with a single-device Trainer "
            "(e.g. Trainer(devices=1)), then train with the value found."
        )
    device = trainer.strategy.root_device
    flags = dict(
        accelerator=trainer.accelerator, devices=[device.index] if device.index is not None else 1,
        precision=trainer.precision, accumulate_grad_batches=trainer.accumulate_grad_batches,
        gradient_clip_val=trainer.gradient_clip_val, gradient_clip_algorithm=trainer.gradient_clip_algorithm,
        deterministic=trainer.deterministic, benchmark=trainer.benchmark, inference_mode=trainer.inference_mode,
        default_root_dir=trainer.default_root_dir, max_epochs=-1, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    return Trainer(callbacks=callbacks, **{**flags, **limits})


@contextlib.contextmanager
def left_as_found(model: Any, datamodule: Any = None) -> Iterator[None]:
    """Run probes on ``model`` and leave it as it was: its weights and buffers (bit for bit), its train/eval
    mode, which Trainer it (and ``datamodule``) belongs to, and the random state, so that training afterwards
    draws the same random numbers as without the probes."""
    saved = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    training = model.training
    owners = [(holder, _trainer_of(holder)) for holder in (model, datamodule) if holder is not None]
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        model.load_state_dict(saved)
        model.train(training)
        for holder, owner in owners:
            holder.trainer = owner
        random.setstate(python_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _trainer_of(holder: Any) -> Trainer | None:
    try:
        return holder.trainer
    except RuntimeError:  # not attached to a Trainer
        return None


def attribute_holders(model: Any, datamodule: Any, name: str) -> list[Any]:
    """Where ``name`` lives, as Lightning looks: the model, its hparams, the datamodule, its hparams."""
    holders = []
    for owner in (model, datamodule):
        if owner is None:
            continue
        if name in vars(owner) or hasattr(type(owner), name):
            holders.append(owner)
        hparams = getattr(owner, "hparams", None)
        if hparams is not None and name in hparams:
            holders.append(hparams)
    return holders


def read_attribute(holders: list[Any], name: str) -> Any:
    first = holders[0]
    return first[name] if isinstance(first, dict) else getattr(first, name)


def write_attribute(holders: list[Any], name: str, value: Any) -> None:
    """Set ``name`` everywhere it lives, so that whichever place the user's code reads sees ``value``."""
    for holder in holders:
        if isinstance(holder, dict):
            holder[name] = value
        else:
            setattr(holder, name, value)
