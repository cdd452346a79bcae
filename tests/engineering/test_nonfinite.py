"""A NaN or infinite loss: nothing by default (as Lightning), or what ``Trainer(on_nonfinite=...)`` asks for."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from engineering import Trainer
from engineering.checkpointing.checkpoint import load_checkpoint
from engineering.errors import MisconfigurationError
from tests.helpers import QUIET, TinyModule, tiny_loader

POISONED_STEP = 2  # the batch whose loss is NaN (4 batches of 16 per epoch)


class PoisonedAt(TinyModule):
    """Its loss is NaN at one global step; it records the weights after every batch."""

    def __init__(self, poisoned_step: int = POISONED_STEP) -> None:
        super().__init__()
        self.poisoned_step = poisoned_step
        self.weights_after: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step == self.poisoned_step else loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.weights_after.append(self.layer.weight.detach().clone())


def fit(tmp_path, model, **flags):
    torch.manual_seed(0)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **{**QUIET, **flags})
    trainer.fit(model, tiny_loader())
    return trainer


def test_by_default_a_nan_loss_reaches_the_weights_as_in_lightning(tmp_path):
    model = PoisonedAt()
    fit(tmp_path, model)
    assert not torch.isfinite(model.layer.weight).all()


def test_raise_names_the_step_and_the_fix(tmp_path):
    with pytest.raises(FloatingPointError, match=r"The loss is nan at global_step 2 \(epoch 0, batch_idx 2\)"
                       r".*detect_anomaly=True"):
        fit(tmp_path, PoisonedAt(), on_nonfinite="raise")


def test_skip_leaves_the_weights_unchanged_by_that_batch_warns_once_and_trains_on(tmp_path):
    model = PoisonedAt()
    with pytest.warns(RuntimeWarning, match="The loss is nan at global_step 2.*skipped") as caught:
        trainer = fit(tmp_path, model, on_nonfinite="skip")
    assert len([w for w in caught if "loss is nan" in str(w.message)]) == 1
    before, after, *_ = model.weights_after[POISONED_STEP - 1:]
    assert torch.equal(before, after)  # the poisoned batch changed nothing
    assert torch.isfinite(model.layer.weight).all() and not torch.equal(model.weights_after[-1], after)
    assert trainer.global_step == 4


def test_skip_warns_only_once_for_many_bad_batches(tmp_path):
    class AlwaysInfinite(PoisonedAt):
        def training_step(self, batch, batch_idx):
            return TinyModule.training_step(self, batch, batch_idx) * float("inf")

    model = AlwaysInfinite()
    initial = copy.deepcopy(model.layer.weight.detach())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, model, on_nonfinite="skip")
    assert len([w for w in caught if "The loss is" in str(w.message)]) == 1
    assert torch.equal(model.layer.weight.detach(), initial)


def test_stop_saves_the_weights_before_the_bad_step_and_stops(tmp_path, capsys):
    model = PoisonedAt()
    trainer = fit(tmp_path, model, on_nonfinite="stop")
    path = tmp_path / f"nonfinite_step_{POISONED_STEP}.ckpt"
    assert f"The loss is nan at global_step 2 (epoch 0, batch_idx 2): saved {path} and stopped" in capsys.readouterr().out
    assert len(model.weights_after) == POISONED_STEP + 1  # the poisoned batch ended the epoch
    assert trainer.should_stop and torch.isfinite(model.layer.weight).all()
    saved = load_checkpoint(path)["state_dict"]["layer.weight"]
    assert torch.equal(saved, model.weights_after[POISONED_STEP - 1])


def test_with_accumulation_a_bad_loss_anywhere_in_the_window_skips_its_step(tmp_path):
    model = PoisonedAt(poisoned_step=1)  # global_step 1 spans batches 2 and 3; batch 2 is poisoned
    with pytest.warns(RuntimeWarning, match=r"global_step 1 \(epoch 0, batch_idx 2\)"):
        fit(tmp_path, model, on_nonfinite="skip", accumulate_grad_batches=2)
    assert torch.equal(model.weights_after[1], model.weights_after[3])
    assert torch.isfinite(model.layer.weight).all()


def test_an_unknown_policy_is_refused_naming_the_choices():
    with pytest.raises(MisconfigurationError, match=r"on_nonfinite='ignore' is not a policy; use None, 'raise'"):
        Trainer(on_nonfinite="ignore")


def test_skip_with_a_closure_optimizer_is_refused_naming_raise(tmp_path):
    class WithLBFGS(PoisonedAt):
        def configure_optimizers(self):
            return torch.optim.LBFGS(self.parameters())

    with pytest.raises(MisconfigurationError, match="on_nonfinite='skip' needs the default optimizer step"):
        fit(tmp_path, WithLBFGS(), on_nonfinite="skip")


def test_detect_anomaly_says_it_is_slow_and_names_the_operation_that_made_the_nan(tmp_path, capsys):
    class SqrtOfNegative(TinyModule):
        def training_step(self, batch, batch_idx):
            return torch.sqrt(super().training_step(batch, batch_idx) - 100.0)

    with pytest.raises(RuntimeError, match="Function 'SqrtBackward0' returned nan values"):
        fit(tmp_path, SqrtOfNegative(), detect_anomaly=True)
    assert ("You have turned on `Trainer(detect_anomaly=True)`. This will significantly slow down compute speed and "
            "is recommended only for model debugging.") in capsys.readouterr().out
