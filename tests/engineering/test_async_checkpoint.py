"""ModelCheckpoint(async_save=True): the same files as a synchronous run, written by a background thread."""

from __future__ import annotations

import copy
import os
import pickle
import threading
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import engineering.checkpointing.writer as writer_module
from engineering import Logger, ModelCheckpoint, Trainer, seed_everything
from research import LightningModule
from research.checkpoint_io import CheckpointError, load_checkpoint


class Regressor(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


class SaveRecorder(Logger):
    """Which thread heard after_save_checkpoint, and which files existed by then."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[tuple[str, bool]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        named = [*checkpoint_callback.best_k_models, checkpoint_callback.last_model_path]
        self.heard.append((threading.current_thread().name, all(os.path.isfile(path) for path in named)))


def train(directory, async_save: bool, **trainer_options) -> tuple[Regressor, ModelCheckpoint, Trainer]:
    seed_everything(0)
    data = TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    model = Regressor()
    callback = ModelCheckpoint(dirpath=directory, every_n_train_steps=2, save_top_k=2, monitor="train_loss",
                               save_last=True, async_save=async_save)
    trainer = Trainer(max_epochs=2, callbacks=[callback], enable_progress_bar=False, enable_model_summary=False,
                      **{"logger": False, **trainer_options})
    trainer.fit(model, DataLoader(data, batch_size=8, shuffle=True))
    return model, callback, trainer


@pytest.fixture
def slow_disk(monkeypatch):
    """Each background write takes 50 ms longer, so training runs ahead of the disk."""
    real_save = writer_module.save_atomically

    def slow_save(checkpoint, path):
        time.sleep(0.05)
        real_save(checkpoint, path)

    monkeypatch.setattr(writer_module, "save_atomically", slow_save)


def test_async_files_hold_what_a_synchronous_run_saved_at_that_step(tmp_path, slow_disk):
    sync_model, sync_callback, _ = train(tmp_path / "sync", async_save=False)
    async_model, async_callback, _ = train(tmp_path / "async", async_save=True)

    # fit returned only once every file was on disk: the same names, the same contents, bit for bit.
    names = sorted(path.name for path in (tmp_path / "sync").iterdir())
    assert names == sorted(path.name for path in (tmp_path / "async").iterdir())
    assert len(names) == 3  # top 2 and last
    for name in names:
        expected, actual = load_checkpoint(tmp_path / "sync" / name), load_checkpoint(tmp_path / "async" / name)
        assert actual["global_step"] == expected["global_step"]
        for key, tensor in expected["state_dict"].items():
            assert torch.equal(actual["state_dict"][key], tensor), (name, key)
        assert torch.equal(actual["optimizer_states"][0]["state"][0]["exp_avg"],
                           expected["optimizer_states"][0]["state"][0]["exp_avg"])
    assert async_callback.best_k_models.keys() == {
        path.replace("/sync/", "/async/") for path in sync_callback.best_k_models
    }
    assert torch.equal(async_model.layer.weight, sync_model.layer.weight)


def test_loggers_hear_of_each_file_on_the_training_thread_once_it_is_written(tmp_path, slow_disk):
    synchronous, background = SaveRecorder(), SaveRecorder()
    train(tmp_path / "sync", async_save=False, logger=synchronous)
    train(tmp_path / "async", async_save=True, logger=background)

    assert len(background.heard) == len(synchronous.heard) > 8  # one per file written
    assert set(background.heard) == {(threading.main_thread().name, True)}  # every file it names exists


def test_a_failed_background_write_is_raised_in_fit_and_leaves_the_earlier_files(tmp_path, monkeypatch):
    real_save = writer_module.save_atomically
    writes = []

    def disk_fills_up(checkpoint, path):
        writes.append(path)
        if len(writes) > 2:
            raise CheckpointError(f"Could not write the checkpoint {str(path)!r}: the disk (or your quota) is full")
        real_save(checkpoint, path)

    monkeypatch.setattr(writer_module, "save_atomically", disk_fills_up)

    with pytest.raises(CheckpointError, match="disk .* is full"):
        train(tmp_path, async_save=True)
    for path in writes[:2]:
        assert load_checkpoint(path)["global_step"] == 2


def test_the_callback_copies_and_pickles_after_an_async_fit(tmp_path):
    _, callback, _ = train(tmp_path, async_save=True)

    for clone in (copy.deepcopy(callback), pickle.loads(pickle.dumps(callback))):
        assert clone.best_k_models == callback.best_k_models
    assert not any(thread.name.startswith("tribus-checkpoint-writer") for thread in threading.enumerate())
