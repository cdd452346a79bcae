"""reload_dataloaders_every_n_epochs: which loaders are asked for again, and when, as in Lightning 2.6.6 (the
expected lists are what Lightning's hooks recorded for the same runs)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from engineering import Callback, MisconfigurationError, ModelCheckpoint, Trainer, seed_everything
from research import LightningModule
from tests.helpers import QUIET


class Asked(LightningModule):
    """Records each ``*_dataloader()`` call with the epoch it was made in."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.Dropout(0.2), torch.nn.Linear(4, 1))
        self.asked: list[tuple[str, int]] = []

    def train_dataloader(self):
        self.asked.append(("train", self.trainer.current_epoch))
        return {"a": DataLoader(torch.randn(8, 1, generator=torch.Generator().manual_seed(1)), batch_size=2,
                                shuffle=True),
                "b": DataLoader(torch.randn(6, 1, generator=torch.Generator().manual_seed(2)), batch_size=2,
                                shuffle=True)}

    def val_dataloader(self):
        self.asked.append(("val", self.trainer.current_epoch))
        return DataLoader(torch.randn(4, 1, generator=torch.Generator().manual_seed(3)), batch_size=2)

    def training_step(self, batch, batch_idx):
        return F.mse_loss(self.layer(batch["a"]), batch["b"])

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def asked(tmp_path, every: int, **flags) -> list[tuple[str, int]]:
    model = Asked()
    Trainer(max_epochs=5, reload_dataloaders_every_n_epochs=every, default_root_dir=tmp_path,
            **{**QUIET, "num_sanity_val_steps": 2, **flags}).fit(model)
    return model.asked


@pytest.mark.parametrize("every, flags, reloads", [
    (0, {}, []),
    (1, {}, [("train", 1), ("val", 1), ("train", 2), ("val", 2), ("train", 3), ("val", 3), ("train", 4), ("val", 4)]),
    (2, {}, [("train", 2), ("val", 2), ("train", 4), ("val", 4)]),
    (2, {"num_sanity_val_steps": 0}, [("train", 2), ("val", 2), ("train", 4), ("val", 4)]),
    (1, {"val_check_interval": 0.5},
     [("train", 1), ("val", 1), ("train", 2), ("val", 2), ("train", 3), ("val", 3), ("train", 4), ("val", 4)]),
    (1, {"check_val_every_n_epoch": 2}, [("train", 1), ("val", 1), ("train", 2), ("train", 3), ("val", 3), ("train", 4)]),
    (2, {"check_val_every_n_epoch": 2, "num_sanity_val_steps": 0}, [("train", 2), ("val", 3), ("train", 4)]),
])
def test_loaders_are_asked_for_again_when_lightning_asks(tmp_path, every, flags, reloads):
    calls = asked(tmp_path, every, **flags)
    assert sorted(calls[:2]) == [("train", 0), ("val", 0)]  # fit sets both up before it starts
    assert calls[2:] == reloads


def test_the_flag_must_be_a_non_negative_int():
    with pytest.raises(MisconfigurationError, match=r"reload_dataloaders_every_n_epochs=-1 must be an int >= 0"):
        Trainer(reload_dataloaders_every_n_epochs=-1)


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def fit(tmp_path, ckpt_path=None, extra=()) -> Asked:
    seed_everything(5)
    model = Asked()
    callbacks = [ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, every_n_train_steps=1), *extra]
    trainer = Trainer(max_epochs=5, reload_dataloaders_every_n_epochs=2, default_root_dir=tmp_path, callbacks=callbacks,
                      **{**QUIET, "enable_checkpointing": True, "num_sanity_val_steps": 0})
    try:
        trainer.fit(model, ckpt_path=ckpt_path)
    except SystemExit:  # how a run ends after Ctrl-C (KeyboardInterrupt), as in Lightning
        pass
    return model


def test_a_resumed_run_counts_from_its_epoch_and_still_ends_bitwise(tmp_path):
    straight = fit(tmp_path / "straight")
    fit(tmp_path, extra=[StopAt(11)])  # 4 batches an epoch: the last checkpoint is epoch 2, batch 2
    resumed = fit(tmp_path, ckpt_path="last")
    # As Lightning: the loaders are asked for in the epoch the run resumes in, and n epochs after that.
    assert resumed.asked == [("train", 2), ("val", 2), ("train", 4), ("val", 4)]
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
