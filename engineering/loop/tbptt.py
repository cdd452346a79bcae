"""Truncated backpropagation through time (Lightning 1.x's ``truncated_bptt_steps``): one batch, several steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from engineering.errors import MisconfigurationError
from research.nested import apply_to_collection


def train_through_time(step: Any, module: Any, batch: Any, batch_idx: int, is_last: bool) -> list[Any]:
    """Truncated backpropagation through time: split the batch along time with ``module.tbptt_split_batch``, and
    take one optimizer step per split (the schedulers step once per batch, after its last split). Each split's
    training_step gets the hidden state the previous one returned (None for the first), detached, so gradients
    stop at the split boundary."""
    hiddens = None
    outputs = []
    splits = module.tbptt_split_batch(batch, module.truncated_bptt_steps)
    for index, split in enumerate(splits):
        split_outputs = step(split, batch_idx, True, True, is_last, hiddens, steps_schedulers=index == len(splits) - 1)
        if not isinstance(split_outputs, Mapping) or "hiddens" not in split_outputs:
            raise MisconfigurationError(
                "With truncated_bptt_steps set, training_step must return a dict with the hidden state for the "
                "next split: `return {'loss': loss, 'hiddens': hiddens}` (hiddens may be None)."
            )
        hiddens = apply_to_collection(split_outputs["hiddens"], torch.Tensor, torch.Tensor.detach)
        outputs.append(split_outputs)
    return outputs
