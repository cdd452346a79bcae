"""Gradients and inference mode in the hooks of validate, test, predict and fit's validation, as Lightning 2.6.6
has them; and training_step with gradients inside a closure that an optimizer's no_grad step() calls."""

from __future__ import annotations

import ast
import subprocess
import types

import pytest
import torch
from torch.nn import functional as F

from engineering import Callback, Trainer
from research import LightningModule
from tests.fixtures.grad_mode_table import record
from tests.helpers import QUIET, ROOT, TinyModule, lightning_python, tiny_loader

# What tests/fixtures/grad_mode_table.py printed with Lightning 2.6.6: (grad enabled, inference mode) per hook.
LIGHTNING_2_6_6 = {
    'fit: callback.setup': (True, False),
    'fit: callback.on_fit_start': (True, False),
    'fit: module.on_fit_start': (True, False),
    'fit: callback.on_sanity_check_start': (True, False),
    'fit: module.on_validation_model_eval': (False, False),
    'fit: callback.on_validation_start': (False, False),
    'fit: module.on_validation_start': (False, False),
    'fit: callback.on_validation_epoch_start': (False, False),
    'fit: module.on_validation_epoch_start': (False, False),
    'fit: callback.on_validation_batch_start': (False, False),
    'fit: module.on_validation_batch_start': (False, False),
    'fit: module.validation_step': (False, False),
    'fit: callback.on_validation_batch_end': (False, False),
    'fit: module.on_validation_batch_end': (False, False),
    'fit: callback.on_validation_epoch_end': (False, False),
    'fit: module.on_validation_epoch_end': (False, False),
    'fit: callback.on_validation_end': (False, False),
    'fit: module.on_validation_end': (False, False),
    'fit: module.on_validation_model_train': (False, False),
    'fit: callback.on_sanity_check_end': (True, False),
    'fit: callback.on_train_start': (True, False),
    'fit: module.on_train_start': (True, False),
    'fit: callback.on_train_epoch_start': (True, False),
    'fit: module.on_train_epoch_start': (True, False),
    'fit: module.training_step': (True, False),
    'fit: callback.on_train_epoch_end': (True, False),
    'fit: module.on_train_epoch_end': (True, False),
    'fit: callback.on_train_end': (True, False),
    'fit: module.on_train_end': (True, False),
    'fit: callback.on_fit_end': (True, False),
    'fit: module.on_fit_end': (True, False),
    'fit: callback.teardown': (True, False),
    'validate: callback.setup': (True, False),
    'validate: module.on_validation_model_eval': (False, True),
    'validate: callback.on_validation_start': (False, True),
    'validate: module.on_validation_start': (False, True),
    'validate: callback.on_validation_epoch_start': (False, True),
    'validate: module.on_validation_epoch_start': (False, True),
    'validate: callback.on_validation_batch_start': (False, True),
    'validate: module.on_validation_batch_start': (False, True),
    'validate: module.validation_step': (False, True),
    'validate: callback.on_validation_batch_end': (False, True),
    'validate: module.on_validation_batch_end': (False, True),
    'validate: callback.on_validation_epoch_end': (False, True),
    'validate: module.on_validation_epoch_end': (False, True),
    'validate: callback.on_validation_end': (False, True),
    'validate: module.on_validation_end': (False, True),
    'validate: module.on_validation_model_train': (False, True),
    'validate: callback.teardown': (True, False),
    'test: callback.setup': (True, False),
    'test: module.on_test_model_eval': (False, True),
    'test: callback.on_test_start': (False, True),
    'test: module.on_test_start': (False, True),
    'test: callback.on_test_epoch_start': (False, True),
    'test: module.on_test_epoch_start': (False, True),
    'test: callback.on_test_batch_start': (False, True),
    'test: module.on_test_batch_start': (False, True),
    'test: module.test_step': (False, True),
    'test: callback.on_test_batch_end': (False, True),
    'test: module.on_test_batch_end': (False, True),
    'test: callback.on_test_epoch_end': (False, True),
    'test: module.on_test_epoch_end': (False, True),
    'test: callback.on_test_end': (False, True),
    'test: module.on_test_end': (False, True),
    'test: module.on_test_model_train': (False, True),
    'test: callback.teardown': (True, False),
    'predict: callback.setup': (True, False),
    'predict: module.on_predict_model_eval': (False, True),
    'predict: callback.on_predict_start': (False, True),
    'predict: module.on_predict_start': (False, True),
    'predict: callback.on_predict_epoch_start': (False, True),
    'predict: module.on_predict_epoch_start': (False, True),
    'predict: callback.on_predict_batch_start': (False, True),
    'predict: module.on_predict_batch_start': (False, True),
    'predict: module.predict_step': (False, True),
    'predict: callback.on_predict_batch_end': (False, True),
    'predict: module.on_predict_batch_end': (False, True),
    'predict: callback.on_predict_epoch_end': (False, True),
    'predict: module.on_predict_epoch_end': (False, True),
    'predict: callback.on_predict_end': (False, True),
    'predict: module.on_predict_end': (False, True),
    'predict: callback.teardown': (True, False),
}


def test_every_evaluation_hook_runs_in_lightnings_grad_mode():
    tribus = types.SimpleNamespace(Callback=Callback, Trainer=Trainer, LightningModule=LightningModule)
    assert record(tribus) == LIGHTNING_2_6_6


@pytest.mark.skipif(lightning_python() is None, reason="needs a Python with Lightning 2.6.6 (make bench builds one)")
def test_the_stored_table_is_what_lightning_prints():
    printed = subprocess.run([lightning_python(), str(ROOT / "tests" / "fixtures" / "grad_mode_table.py")],
                             capture_output=True, text=True, timeout=300, check=True).stdout
    assert ast.literal_eval(printed[printed.index("{"):]) == LIGHTNING_2_6_6


class NoGradSGD(torch.optim.Optimizer):
    """Plain SGD written as custom optimizers usually are: step() under no_grad, the closure called inside."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    parameter.add_(parameter.grad, alpha=-group["lr"])
        return loss


class WithNoGradOptimizer(TinyModule):
    def __init__(self) -> None:
        super().__init__()
        self.grad_enabled_in_step: list[bool] = []

    def training_step(self, batch, batch_idx):
        self.grad_enabled_in_step.append(torch.is_grad_enabled())
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self):
        return NoGradSGD(self.parameters(), lr=0.1)


def test_a_no_grad_optimizer_step_still_trains_through_its_closure(tmp_path):
    torch.manual_seed(0)
    model = WithNoGradOptimizer()
    weight, bias = (parameter.detach().clone() for parameter in model.parameters())
    for x, y in tiny_loader():  # the same steps by hand
        weight.requires_grad_(), bias.requires_grad_()
        gradients = torch.autograd.grad(F.cross_entropy(F.linear(x, weight, bias), y), [weight, bias])
        weight, bias = (weight - 0.1 * gradients[0]).detach(), (bias - 0.1 * gradients[1]).detach()
    Trainer(**QUIET, default_root_dir=tmp_path, max_epochs=1).fit(model, tiny_loader())
    assert model.grad_enabled_in_step == [True] * 4
    for parameter, by_hand in zip(model.parameters(), (weight, bias)):
        torch.testing.assert_close(parameter, by_hand, rtol=0, atol=1e-6)
