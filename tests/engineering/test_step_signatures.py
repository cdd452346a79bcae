"""Steps and hooks are called with the arguments their signatures accept, as Lightning calls them: ``batch_idx``
only when a step takes it, and no ``dataloader_idx`` for a batch hook written for one dataloader."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

from engineering import Callback, MisconfigurationError, Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


class WithoutBatchIndex(TinyModule):
    def training_step(self, batch):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def predict_step(self, batch):
        return self(batch[0])


def test_steps_without_batch_idx_are_called_with_the_batch_alone(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(WithoutBatchIndex(), tiny_loader(), tiny_loader())
    assert trainer.global_step == len(tiny_loader())
    assert "val_loss" in trainer.callback_metrics
    predictions = trainer.predict(WithoutBatchIndex(), tiny_loader())
    assert len(predictions) == len(tiny_loader())


def test_manual_optimization_training_step_without_batch_idx(tmp_path):
    class Manual(WithoutBatchIndex):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch):
            optimizer = self.optimizers()
            optimizer.zero_grad()
            self.manual_backward(super().training_step(batch))
            optimizer.step()

    trainer = Trainer(max_epochs=1, limit_val_batches=0, default_root_dir=tmp_path, **QUIET)
    trainer.fit(Manual(), tiny_loader())
    assert trainer.global_step == len(tiny_loader())


class OneLoaderHooks(Callback):
    def __init__(self):
        self.seen = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append(batch_idx)


def test_a_batch_hook_without_dataloader_idx_hears_one_dataloader(tmp_path):
    class ModuleHook(TinyModule):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_validation_batch_start(self, batch, batch_idx):
            self.seen.append(batch_idx)

    callback, module = OneLoaderHooks(), ModuleHook()
    Trainer(max_epochs=1, callbacks=[callback], num_sanity_val_steps=0, default_root_dir=tmp_path, **QUIET).fit(
        module, tiny_loader(), tiny_loader()
    )
    assert callback.seen == module.seen == list(range(len(tiny_loader())))


def test_a_batch_hook_without_dataloader_idx_is_refused_with_several_dataloaders(tmp_path):
    trainer = Trainer(callbacks=[OneLoaderHooks()], default_root_dir=tmp_path, **QUIET)
    with pytest.raises(MisconfigurationError, match=r"OneLoaderHooks.on_validation_batch_end cannot receive "
                                                    r"dataloader_idx.*2 dataloaders.*`dataloader_idx: int = 0`"):
        trainer.validate(TinyModule(), [tiny_loader(), tiny_loader()], verbose=False)
