"""Lightning's warnings and refusals about a run's set-up, in Lightning 2.6.6's words."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from engineering import Callback, Logger, MisconfigurationError, Trainer
from research import LightningModule
from tests.helpers import QUIET, TinyModule, tiny_loader


def fit_options(tmp_path, **flags):
    return dict(QUIET, default_root_dir=tmp_path, max_epochs=1, num_sanity_val_steps=0) | flags


def messages(caught) -> list[str]:
    return [str(warning.message) for warning in caught]


def test_a_training_step_returning_none_warns_and_trains_nothing(tmp_path):
    class ReturnsNothing(TinyModule):
        def training_step(self, batch, batch_idx):
            return None

    model = ReturnsNothing()
    before = [parameter.clone() for parameter in model.parameters()]
    with pytest.warns(UserWarning, match=r"`training_step` returned `None`. If this was on purpose, ignore"):
        Trainer(**fit_options(tmp_path)).fit(model, tiny_loader())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


class Recorder(Callback):
    def __init__(self) -> None:
        self.validations = 0

    def on_validation_start(self, trainer, pl_module):
        self.validations += 1


def test_a_val_dataloader_without_validation_step_warns_and_skips_validation(tmp_path):
    class NoValidationStep(LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(32, 2)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.layer(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    recorder = Recorder()
    with pytest.warns(UserWarning, match="You passed in a `val_dataloader` but have no `validation_step`. Skipping"):
        trainer = Trainer(**fit_options(tmp_path, num_sanity_val_steps=2, callbacks=[recorder]))
        trainer.fit(NoValidationStep(), tiny_loader(), tiny_loader())
    assert recorder.validations == 0
    assert trainer.num_val_batches == []


@pytest.mark.parametrize("entry_point, step", [("validate", "validation_step"), ("test", "test_step")])
def test_validate_and_test_without_their_step_are_refused_naming_it(tmp_path, entry_point, step):
    class TrainsOnly(LightningModule):
        def training_step(self, batch, batch_idx): ...

    trainer = Trainer(**fit_options(tmp_path))
    with pytest.raises(MisconfigurationError, match=rf"No `{step}\(\)` method defined to run `Trainer.{entry_point}`"):
        getattr(trainer, entry_point)(TrainsOnly(), tiny_loader())


class StopAfterOneEpoch(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_an_unset_max_epochs_says_1000_is_used_and_the_stop_is_explained(tmp_path, capsys):
    options = fit_options(tmp_path, callbacks=[StopAfterOneEpoch()])
    del options["max_epochs"]
    with pytest.warns(UserWarning, match=r"`max_epochs` was not set. Setting it to 1000 epochs. To train without"):
        trainer = Trainer(**options)
        trainer.fit(TinyModule(), tiny_loader())
    assert trainer.max_epochs == 1000
    assert capsys.readouterr().out.count("`Trainer.fit` stopped: `trainer.should_stop` was set.") == 1


class SilentLogger(Logger):
    def log_metrics(self, metrics, step=None): ...

    def log_hyperparams(self, params): ...


def test_a_logging_interval_longer_than_the_epoch_warns_when_there_is_a_logger(tmp_path):
    with pytest.warns(UserWarning, match=r"The number of training batches \(4\) is smaller than the logging interval "
                                         r"Trainer\(log_every_n_steps=50\)"):
        Trainer(**fit_options(tmp_path, logger=SilentLogger())).fit(TinyModule(), tiny_loader())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(**fit_options(tmp_path)).fit(TinyModule(), tiny_loader())  # no logger: nothing to warn about
    assert not [m for m in messages(caught) if "logging interval" in m]


class FrozenBackbone(TinyModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Dropout(0.5))
        self.backbone.eval()
        self.backbone_modes: list[bool] = []

    def training_step(self, batch, batch_idx):
        self.backbone_modes.append(self.backbone.training)
        return super().training_step(batch, batch_idx)


def test_modules_in_eval_mode_warn_and_stay_in_eval_mode_through_training_and_validation(tmp_path):
    model = FrozenBackbone()
    with pytest.warns(UserWarning, match=r"Found 2 module\(s\) in eval mode at the start of training"):
        Trainer(**fit_options(tmp_path, max_epochs=2, num_sanity_val_steps=1)).fit(model, tiny_loader(), tiny_loader())
    assert model.backbone_modes == [False] * 8  # Lightning leaves the modes as the user set them
    assert model.training and model.layer.training and not model.backbone.training


def test_the_reason_fit_stopped_is_printed_once(tmp_path, capsys):
    Trainer(**fit_options(tmp_path, max_epochs=2)).fit(TinyModule(), tiny_loader())
    assert capsys.readouterr().out.count("`Trainer.fit` stopped: `max_epochs=2` reached.") == 1
    Trainer(**fit_options(tmp_path, max_steps=3)).fit(TinyModule(), tiny_loader())
    assert capsys.readouterr().out.count("`Trainer.fit` stopped: `max_steps=3` reached.") == 1


def test_a_resume_says_it_restored_all_states(tmp_path, capsys):
    trainer = Trainer(**fit_options(tmp_path))
    trainer.fit(TinyModule(), tiny_loader())
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    capsys.readouterr()
    Trainer(**fit_options(tmp_path, max_epochs=2)).fit(TinyModule(), tiny_loader(), ckpt_path=tmp_path / "one.ckpt")
    assert f"Restored all states from the checkpoint at {tmp_path / 'one.ckpt'}" in capsys.readouterr().out
    Trainer(**fit_options(tmp_path)).validate(TinyModule(), tiny_loader(), ckpt_path=tmp_path / "one.ckpt",
                                              verbose=False)
    assert f"Loaded model weights from the checkpoint at {tmp_path / 'one.ckpt'}" in capsys.readouterr().out


class WithCallable(TinyModule):
    def __init__(self, transform, lr: float = 0.1) -> None:
        super().__init__(lr)
        self.save_hyperparameters()


def test_an_unpicklable_hyperparameter_is_dropped_with_lightnings_warning_and_checkpoints_still_save(tmp_path):
    model = WithCallable(lambda x: x)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **{**QUIET, "enable_checkpointing": True})
    with pytest.warns(UserWarning, match=r"Attribute 'transform' removed from hparams because it cannot be pickled\. "
                      r"You can suppress this warning by setting `self.save_hyperparameters\(ignore=\['transform'\]\)`"):
        trainer.fit(model, tiny_loader())
    assert dict(model.hparams) == {"lr": 0.1} and set(model.hparams_initial) == {"transform", "lr"}
    assert torch.load(trainer.checkpoint_callback.best_model_path, weights_only=False)["hyper_parameters"] == {"lr": 0.1}
