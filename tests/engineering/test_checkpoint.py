"""Checkpoint files: what they hold, checksums, refusing unsafe or broken files, Lightning's files, loading models."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engineering import CheckpointError, MisconfigurationError, ModelCheckpoint, Trainer
from engineering.checkpointing.checkpoint import load_checkpoint, save_atomically
from research import LightningDataModule
from tests.helpers import QUIET, TinyModule, lightning_python, repeating_loader, tiny_loader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LIGHTNING_CHECKPOINT = FIXTURES / "lightning_2_6_6.pt"  # Lightning's epoch=1-step=6.ckpt; see make_lightning_checkpoint.py


def trained_checkpoint(tmp_path: Path, callback: ModelCheckpoint | None = None) -> Path:
    """Fit TinyModule for one epoch and return the checkpoint ModelCheckpoint wrote."""
    callback = callback or ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    trainer = Trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path,
                      **{**QUIET, "enable_checkpointing": True})
    trainer.fit(TinyModule(lr=0.3), tiny_loader(shuffle=True), tiny_loader())
    return Path(callback.best_model_path)


# -------------------------------------------------------------------------------------------------
# Contents
# -------------------------------------------------------------------------------------------------
def test_a_checkpoint_holds_lightnings_keys_and_all_a_resume_needs(tmp_path):
    path = trained_checkpoint(tmp_path)
    checkpoint = load_checkpoint(path)

    assert path.name == "epoch=0-step=4.ckpt"
    assert {"epoch", "global_step", "state_dict", "optimizer_states", "lr_schedulers", "callbacks",
            "hparams_name", "hyper_parameters"} <= checkpoint.keys()
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (0, 4)
    assert checkpoint["hyper_parameters"] == {"lr": 0.3}
    assert checkpoint["format_version"] == 1
    progress = checkpoint["progress"]
    assert (progress["epoch"], progress["batch_idx"], progress["global_step"]) == (1, 0, 4)  # after epoch 0
    # One process: the user's shuffling sampler is left alone, as in Lightning; its order comes from the random
    # state, which the checkpoint holds (and, mid-epoch, the state the epoch's order was drawn from).
    assert progress["sampler_seed"] is None
    assert {"python", "torch", "numpy"} <= checkpoint["rng_states"].keys()
    assert path.read_bytes()[-80:].startswith(b"\nTRIBUS-SHA256:")


def test_the_state_key_of_model_checkpoint_matches_lightnings():
    lightning_keys = set(load_checkpoint(LIGHTNING_CHECKPOINT)["callbacks"])
    assert ModelCheckpoint().state_key in lightning_keys


# -------------------------------------------------------------------------------------------------
# Broken and hostile files
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.5, 0.99, -10], ids=["half", "most", "trailer-cut"])
def test_a_truncated_checkpoint_is_a_clear_error(tmp_path, keep):
    path = trained_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if keep > 0 else data[:keep])

    with pytest.raises(CheckpointError, match="truncated.*Use an earlier checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="truncated"):
        Trainer(max_epochs=2, default_root_dir=tmp_path, **QUIET).fit(TinyModule(), tiny_loader(), ckpt_path=path)


def test_a_changed_byte_fails_the_checksum(tmp_path):
    path = trained_checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(CheckpointError, match="corrupted.*SHA-256"):
        load_checkpoint(path)


class WritesAFile:
    """What an attacker would pickle: unpickling it calls open(path, "w")."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_a_pickled_payload_is_refused_and_never_runs(tmp_path):
    written = tmp_path / "pwned"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": TinyModule().state_dict(), "payload": WritesAFile(written)}, hostile)

    with pytest.raises(CheckpointError, match=r"Refused to load.*\(io\.open\).*weights_only=False"):
        load_checkpoint(hostile)
    with pytest.raises(CheckpointError, match="Refused to load"):
        Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET).fit(TinyModule(), tiny_loader(), ckpt_path=hostile)
    with pytest.raises(CheckpointError, match="Refused to load"):
        TinyModule.load_from_checkpoint(hostile)
    assert not written.exists()

    load_checkpoint(hostile, weights_only=False)  # the opt-out really unpickles: only for files you trust
    assert written.exists()


def test_a_failed_write_keeps_the_previous_checkpoint_and_says_why(tmp_path):
    path = tmp_path / "run.ckpt"
    save_atomically({"state_dict": {"w": torch.ones(3)}}, path)
    previous = path.read_bytes()

    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
    try:
        with pytest.raises(CheckpointError, match=r"run\.ckpt.*full.*previous file at that path.*intact"):
            save_atomically({"state_dict": {"w": torch.zeros(1_000_000)}}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, ignored)

    assert path.read_bytes() == previous
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_unwritable_checkpoint_directory_is_a_clear_error(tmp_path):
    (tmp_path / "a_file").write_text("")
    callback = ModelCheckpoint(dirpath=tmp_path / "a_file" / "checkpoints")
    trainer = Trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path,
                      **{**QUIET, "enable_checkpointing": True})
    with pytest.raises(CheckpointError, match=r"Could not write the checkpoint .*a_file/checkpoints/epoch=0-step=4"):
        trainer.fit(TinyModule(), tiny_loader())


def test_a_checkpoint_of_another_model_names_the_keys_and_shapes_that_differ(tmp_path):
    class Wider(TinyModule):
        def __init__(self, lr: float = 0.1) -> None:
            super().__init__(lr)
            self.layer = torch.nn.Linear(16, 2)
            self.extra = torch.nn.Linear(2, 2)

    path = trained_checkpoint(tmp_path)
    with pytest.raises(CheckpointError) as raised:
        Wider.load_from_checkpoint(path)
    assert "missing keys: ['extra.weight', 'extra.bias']" in str(raised.value)
    assert "layer.weight: checkpoint (2, 32) vs model (2, 16)" in str(raised.value)

    class Extra(TinyModule):
        def __init__(self, lr: float = 0.1) -> None:
            super().__init__(lr)
            self.extra = torch.nn.Linear(2, 2)

    with pytest.raises(CheckpointError, match=r"missing keys.*or pass strict=False"):
        Extra.load_from_checkpoint(path)
    with pytest.warns(UserWarning, match="missing keys kept their values"):
        Extra.load_from_checkpoint(path, strict=False)


def test_a_weights_only_checkpoint_cannot_resume_training(tmp_path):
    path = trained_checkpoint(tmp_path, ModelCheckpoint(dirpath=tmp_path / "c", save_weights_only=True))
    assert "optimizer_states" not in load_checkpoint(path)
    with pytest.raises(CheckpointError, match="holds only weights.*load_from_checkpoint"):
        Trainer(max_epochs=2, default_root_dir=tmp_path, **QUIET).fit(TinyModule(), tiny_loader(), ckpt_path=path)


# -------------------------------------------------------------------------------------------------
# Rebuilding modules and datamodules
# -------------------------------------------------------------------------------------------------
def test_load_from_checkpoint_rebuilds_from_hyper_parameters_with_overrides(tmp_path):
    path = trained_checkpoint(tmp_path)
    saved = load_checkpoint(path)["state_dict"]

    model = TinyModule.load_from_checkpoint(path)
    assert model.hparams.lr == 0.3
    assert all(torch.equal(value, saved[name]) for name, value in model.state_dict().items())
    assert TinyModule.load_from_checkpoint(path, lr=0.7).hparams.lr == 0.7


class Numbers(LightningDataModule):
    def __init__(self, samples: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.epochs_seen = 0

    def train_dataloader(self):
        return tiny_loader(samples=self.hparams.samples)

    def state_dict(self):
        return {"epochs_seen": self.epochs_seen + 5}

    def load_state_dict(self, state_dict):
        self.epochs_seen = state_dict["epochs_seen"]


def test_a_datamodule_is_rebuilt_with_its_hyper_parameters_and_state(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    Trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path, **{**QUIET, "enable_checkpointing": True}).fit(
        TinyModule(), datamodule=Numbers(samples=48)
    )
    datamodule = Numbers.load_from_checkpoint(callback.best_model_path)
    assert datamodule.hparams.samples == 48 and datamodule.epochs_seen == 5


def test_the_hyper_parameter_keys_are_lightnings_class_attributes():
    assert (TinyModule.CHECKPOINT_HYPER_PARAMS_KEY, TinyModule.CHECKPOINT_HYPER_PARAMS_NAME,
            TinyModule.CHECKPOINT_HYPER_PARAMS_TYPE) == ("hyper_parameters", "hparams_name", "hparams_type")
    assert (Numbers.CHECKPOINT_HYPER_PARAMS_KEY, Numbers.CHECKPOINT_HYPER_PARAMS_NAME,
            Numbers.CHECKPOINT_HYPER_PARAMS_TYPE) == ("datamodule_hyper_parameters", "datamodule_hparams_name",
                                                      "datamodule_hparams_type")


class RenamedKeys(TinyModule):
    CHECKPOINT_HYPER_PARAMS_KEY = "model_settings"
    CHECKPOINT_HYPER_PARAMS_NAME = "model_settings_name"


def test_checkpoints_write_and_read_the_hyper_parameters_under_the_class_attribute_keys(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    Trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path, **{**QUIET, "enable_checkpointing": True}).fit(
        RenamedKeys(lr=0.4), tiny_loader()
    )
    checkpoint = load_checkpoint(callback.best_model_path)
    assert checkpoint["model_settings"] == {"lr": 0.4} and checkpoint["model_settings_name"] == "kwargs"
    assert "hyper_parameters" not in checkpoint
    assert RenamedKeys.load_from_checkpoint(callback.best_model_path).hparams.lr == 0.4


# -------------------------------------------------------------------------------------------------
# A checkpoint written by Lightning 2.6.6
# -------------------------------------------------------------------------------------------------
class AdamTiny(TinyModule):
    """TinyModule with the fixture's optimizer and scheduler, so its checkpoint fits."""

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


def test_a_lightning_checkpoint_loads_as_a_model():
    saved = torch.load(LIGHTNING_CHECKPOINT, weights_only=True)
    model = AdamTiny.load_from_checkpoint(LIGHTNING_CHECKPOINT)
    assert model.hparams.lr == 0.05
    assert all(torch.equal(value, saved["state_dict"][name]) for name, value in model.state_dict().items())


def test_training_resumes_from_a_lightning_checkpoint(tmp_path):
    saved = torch.load(LIGHTNING_CHECKPOINT, weights_only=True)
    seen = {}

    class Inspect(AdamTiny):
        def on_train_start(self):
            optimizer = self.trainer.optimizers[0]
            seen.update(epoch=self.current_epoch, step=self.global_step, lr=optimizer.param_groups[0]["lr"],
                        adam_steps=[state["step"].item() for state in optimizer.state.values()],
                        weights=[value.clone() for value in self.state_dict().values()])

    trainer = Trainer(max_epochs=3, limit_train_batches=3, default_root_dir=tmp_path, **QUIET)
    trainer.fit(Inspect(), tiny_loader(), ckpt_path=LIGHTNING_CHECKPOINT)

    assert (seen["epoch"], seen["step"]) == (2, 6)  # it was written at the end of epoch 1, after 6 steps
    assert seen["lr"] == 0.0125 and seen["adam_steps"] == [6.0, 6.0]
    assert all(torch.equal(a, b) for a, b in zip(seen["weights"], saved["state_dict"].values()))
    assert (trainer.current_epoch, trainer.global_step) == (3, 9)


def test_a_plain_torch_save_of_tensors_loads_unverified(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.arange(3)}}, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.arange(3))


def test_load_from_checkpoint_moves_the_model_where_its_weights_were_mapped(tmp_path):
    path = trained_checkpoint(tmp_path)
    model = TinyModule.load_from_checkpoint(path, map_location="cpu")
    assert model.device == torch.device("cpu")


def test_save_checkpoint_after_fit_still_calls_the_modules_hook(tmp_path):
    class Noting(TinyModule):
        def on_save_checkpoint(self, checkpoint):
            checkpoint["note"] = "kept"

    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(Noting(), DataLoader(TensorDataset(torch.randn(4, 32), torch.zeros(4, dtype=torch.long))))
    trainer.save_checkpoint(tmp_path / "after.ckpt")
    assert load_checkpoint(tmp_path / "after.ckpt")["note"] == "kept"


class WorseEachEpoch(TinyModule):
    """val_loss rises every epoch, so the best checkpoint is the first epoch's."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", float(self.current_epoch))


def test_validate_without_a_model_after_fit_uses_the_best_checkpoint_as_lightning_does(tmp_path):
    module = WorseEachEpoch()
    trainer = Trainer(max_epochs=3, default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                      logger=False, callbacks=[ModelCheckpoint(monitor="val_loss", mode="min")])
    trainer.fit(module, tiny_loader(), tiny_loader())
    with pytest.warns(UserWarning, match="best checkpoint of the previous run"):
        trainer.validate(dataloaders=tiny_loader(), verbose=False)
    assert trainer.ckpt_path == trainer.checkpoint_callback.best_model_path
    assert "epoch=0" in trainer.ckpt_path
    trainer.validate(module, tiny_loader(), verbose=False)  # a model passed: its weights as they are
    assert trainer.ckpt_path is None


def test_without_a_checkpoint_test_uses_the_current_weights_and_says_so(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(TinyModule(), tiny_loader())
    with pytest.warns(UserWarning, match="current weights"):
        trainer.test(dataloaders=tiny_loader(), verbose=False)
    assert trainer.ckpt_path is None


# -------------------------------------------------------------------------------------------------
# Lightning reads tribus's checkpoints
# -------------------------------------------------------------------------------------------------
def _shape(tree: dict) -> dict:
    return {key: _shape(value) if isinstance(value, dict) else type(value).__name__ for key, value in tree.items()}


def test_a_checkpoint_holds_the_loop_state_lightning_resumes_from(tmp_path):
    checkpoint = load_checkpoint(trained_checkpoint(tmp_path))
    lightning = load_checkpoint(LIGHTNING_CHECKPOINT)
    assert checkpoint["pytorch-lightning_version"] == lightning["pytorch-lightning_version"] == "2.6.6"
    fit_loop = checkpoint["loops"]["fit_loop"]
    assert _shape(fit_loop) == _shape(lightning["loops"]["fit_loop"])
    assert fit_loop["epoch_progress"]["current"]["completed"] == 1  # one epoch done: Lightning's current_epoch
    steps = fit_loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"]
    assert steps == checkpoint["global_step"] == 4  # Lightning's global_step
    assert fit_loop["epoch_loop.state_dict"]["_batches_that_stepped"] == 4


def _resume_in_both(tmp_path: Path, lightning: str, mid_epoch: bool) -> tuple[dict, TinyModule, Trainer]:
    """A tribus checkpoint (after two epochs, or after step 6: batch 2 of epoch 1), resumed to four epochs by
    Lightning in its own process and by tribus. Mid-epoch, Lightning reads a loader that cannot resume from its
    start again, where tribus continues at batch 2: the batches are all the same there, so both read alike."""
    loader = repeating_loader if mid_epoch else tiny_loader
    at_step_6 = ModelCheckpoint(dirpath=tmp_path, filename="tribus", every_n_train_steps=6, save_top_k=-1)
    first = Trainer(max_epochs=2, default_root_dir=tmp_path, **{**QUIET, "enable_checkpointing": mid_epoch},
                    callbacks=[at_step_6] if mid_epoch else [])
    first.fit(TinyModule(), loader())
    if not mid_epoch:
        first.save_checkpoint(tmp_path / "tribus.ckpt")
    assert load_checkpoint(tmp_path / "tribus.ckpt")["progress"]["batch_idx"] == (2 if mid_epoch else 0)
    outcome = tmp_path / "lightning.pt"
    environment = {**os.environ, "PYTHONPATH": str(FIXTURES.parents[1])}
    command = [lightning, str(FIXTURES / "lightning_resumes.py"), str(tmp_path / "tribus.ckpt"), "4", str(outcome)]
    finished = subprocess.run(command + (["repeating"] if mid_epoch else []), capture_output=True, text=True,
                              env=environment, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    model = TinyModule()
    resumed = Trainer(max_epochs=4, default_root_dir=tmp_path, **QUIET)
    resumed.fit(model, loader(), ckpt_path=tmp_path / "tribus.ckpt")
    return torch.load(outcome, weights_only=False), model, resumed


@pytest.mark.skipif(lightning_python() is None, reason="needs a Python with Lightning 2.6.6 (make bench builds one)")
@pytest.mark.parametrize("mid_epoch", [False, True], ids=["between-epochs", "mid-epoch"])
def test_lightning_resumes_from_a_tribus_checkpoint_and_ends_where_tribus_does(tmp_path, mid_epoch):
    lightning, model, resumed = _resume_in_both(tmp_path, lightning_python(), mid_epoch)
    assert (lightning["global_step"], lightning["current_epoch"]) == (resumed.global_step, resumed.current_epoch) == (16, 4)
    for name, value in model.state_dict().items():
        assert torch.equal(lightning["state_dict"][name], value), name


# -------------------------------------------------------------------------------------------------
# Files a team shares, and files from elsewhere
# -------------------------------------------------------------------------------------------------
def test_a_checkpoint_gets_the_mode_the_umask_gives_new_files(tmp_path):
    previous = os.umask(0o022)
    try:
        path = trained_checkpoint(tmp_path)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644  # mkstemp alone would leave 0600: unreadable to the group


def test_a_checkpoint_from_a_newer_format_is_refused_naming_the_version_that_wrote_it(tmp_path):
    checkpoint = load_checkpoint(trained_checkpoint(tmp_path))
    assert isinstance(checkpoint["tribus_version"], str)
    save_atomically({**checkpoint, "format_version": 2, "tribus_version": "9.9.9"}, tmp_path / "newer.ckpt")
    trainer = Trainer(max_epochs=2, default_root_dir=tmp_path, **QUIET)
    with pytest.raises(CheckpointError, match=r"format_version 2, written by tribus 9\.9\.9.*Upgrade tribus"):
        trainer.fit(TinyModule(), tiny_loader(), ckpt_path=tmp_path / "newer.ckpt")


def test_a_directory_as_ckpt_path_says_to_pick_a_file(tmp_path):
    path = trained_checkpoint(tmp_path)
    trainer = Trainer(max_epochs=2, default_root_dir=tmp_path, **QUIET)
    with pytest.raises(MisconfigurationError, match=rf"is a directory; pass one checkpoint file \(it holds {path.name}\)"):
        trainer.fit(TinyModule(), tiny_loader(), ckpt_path=path.parent)
