"""A step or dataloader set to None on the instance: Lightning 2.6.6's way to skip a loop, with its messages."""

from __future__ import annotations

import warnings

import pytest

from engineering import Callback, MisconfigurationError, Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


class CountsValidation(Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.batches += 1


class WithLoaders(TinyModule):
    def train_dataloader(self):
        return tiny_loader(samples=32)

    def val_dataloader(self):
        return tiny_loader(samples=32)

    def test_dataloader(self):
        return tiny_loader(samples=32)

    def predict_dataloader(self):
        return tiny_loader(samples=32)


def trainer(tmp_path, *callbacks):
    return Trainer(**QUIET, default_root_dir=tmp_path, max_epochs=1, callbacks=list(callbacks))


@pytest.mark.parametrize("attribute, message", [
    ("validation_step", "You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop."),
    ("val_dataloader", "You defined a `validation_step` but have no `val_dataloader`. Skipping val loop."),
])
def test_fit_skips_validation_when_its_step_or_loader_is_none(tmp_path, attribute, message):
    model, counter = WithLoaders(), CountsValidation()
    setattr(model, attribute, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, counter).fit(model)
    assert counter.batches == 0
    assert message in [str(warning.message) for warning in caught]


def test_fit_still_validates_when_only_test_step_is_none(tmp_path):
    model, counter = WithLoaders(), CountsValidation()
    model.test_step = None
    trainer(tmp_path, counter).fit(model)
    assert counter.batches == 2 + 2  # the sanity check's two batches, then the epoch's validation


@pytest.mark.parametrize("entry, step", [("validate", "validation_step"), ("test", "test_step")])
def test_validate_and_test_refuse_a_none_step(tmp_path, entry, step):
    model = WithLoaders()
    setattr(model, step, None)
    with pytest.raises(MisconfigurationError, match=rf"No `{step}\(\)` method defined to run `Trainer.{entry}`."):
        getattr(trainer(tmp_path), entry)(model, verbose=False)


def test_predict_refuses_a_none_predict_step(tmp_path):
    model = WithLoaders()
    model.predict_step = None
    with pytest.raises(MisconfigurationError, match=r"`predict_step` cannot be None to run `Trainer.predict`"):
        trainer(tmp_path).predict(model)


@pytest.mark.parametrize("entry, hook", [
    ("validate", "val_dataloader"), ("test", "test_dataloader"), ("predict", "predict_dataloader"),
])
def test_evaluation_without_a_loader_names_the_fix(tmp_path, entry, hook):
    model = WithLoaders()
    setattr(model, hook, None)
    expected = (rf"An invalid dataloader was passed to `Trainer.{entry}\(dataloaders=...\)`. Found None. Either pass "
                rf"the dataloader to the `.{entry}\(\)` method OR implement `def {hook}\(self\):`")
    with pytest.raises(TypeError, match=expected):
        getattr(trainer(tmp_path), entry)(model)
