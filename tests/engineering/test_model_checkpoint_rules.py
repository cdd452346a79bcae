"""ModelCheckpoint reconciles its top-k bookkeeping with the files on disk when it resumes: a top-k file a kill
left untracked goes, only when it is provably its own; anything else stays."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from engineering import ModelCheckpoint, Trainer
from helpers import QUIET, TinyModule, tiny_loader

FLAGS = {**QUIET, "enable_checkpointing": True, "num_sanity_val_steps": 0}
SCORES = [0.5, 0.3, 0.4, 0.2, 0.6]  # one per epoch: the top two are epochs 1 and 3


class Scored(TinyModule):
    def validation_step(self, batch, batch_idx):
        self.log("score", SCORES[self.current_epoch])


def fit(root: Path, max_epochs: int, ckpt_path=None) -> ModelCheckpoint:
    callback = ModelCheckpoint(dirpath=root / "checkpoints", filename="{epoch}-{score:.1f}", monitor="score",
                               save_top_k=2, save_last=True)
    trainer = Trainer(max_epochs=max_epochs, callbacks=[callback], default_root_dir=root, **FLAGS)
    trainer.fit(Scored(), tiny_loader(), tiny_loader(samples=16), ckpt_path=ckpt_path)
    return callback


def names(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def killed_after_the_top_k_write(root: Path) -> Path:
    """The files a kill leaves when it lands after epoch 3's top-k file is written but before last.ckpt (which
    records it) and before epoch 2's file is removed: epoch=3-score=0.2.ckpt is on disk, untracked."""
    directory = root / "checkpoints"
    fit(root, max_epochs=3)
    kept = root / "kept"
    shutil.copytree(directory, kept)
    fit(root, max_epochs=4, ckpt_path="last")
    shutil.copy2(kept / "last.ckpt", directory / "last.ckpt")
    shutil.copy2(kept / "epoch=2-score=0.4.ckpt", directory / "epoch=2-score=0.4.ckpt")
    assert names(directory) == {"epoch=1-score=0.3.ckpt", "epoch=2-score=0.4.ckpt", "epoch=3-score=0.2.ckpt",
                                "last.ckpt"}
    return directory


def test_a_resume_removes_the_top_k_file_a_kill_left_untracked_and_ends_as_an_uninterrupted_run(tmp_path, capsys):
    straight = fit(tmp_path / "straight", max_epochs=5)
    directory = killed_after_the_top_k_write(tmp_path / "killed")
    capsys.readouterr()

    resumed = fit(tmp_path / "killed", max_epochs=5, ckpt_path="last")

    assert "ModelCheckpoint: removed epoch=3-score=0.2.ckpt" in capsys.readouterr().out
    assert names(directory) == names(tmp_path / "straight" / "checkpoints") == {
        "epoch=1-score=0.3.ckpt", "epoch=3-score=0.2.ckpt", "last.ckpt"}  # no stray file, no -v1 duplicate
    assert sorted(Path(p).name for p in resumed.best_k_models) == sorted(Path(p).name for p in straight.best_k_models)


def test_files_that_are_not_provably_its_own_stay(tmp_path):
    directory = killed_after_the_top_k_write(tmp_path)
    torch.save({"note": "the user's"}, directory / "epoch=9-score=0.1.ckpt")  # its name, not its checkpoint
    (directory / "epoch=8-score=0.1.ckpt").write_bytes(b"not a checkpoint")
    (directory / "notes-epoch=3.ckpt").write_bytes(b"another name")
    foreign = directory / "epoch=3-score=0.2.ckpt"
    shutil.move(foreign, directory / "best.ckpt")  # the orphan under a name outside its template

    fit(tmp_path, max_epochs=5, ckpt_path="last")

    assert {"epoch=9-score=0.1.ckpt", "epoch=8-score=0.1.ckpt", "notes-epoch=3.ckpt", "best.ckpt"} <= names(directory)
