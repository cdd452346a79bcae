"""ModelCheckpoint and OnExceptionCheckpoint behave as Lightning's do: names, top-k, last, triggers, resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from engineering import MisconfigurationError, ModelCheckpoint, OnExceptionCheckpoint, Trainer
from engineering.checkpointing.checkpoint import load_checkpoint
from tests.helpers import QUIET, TinyModule, tiny_loader

FLAGS = {**QUIET, "enable_checkpointing": True, "num_sanity_val_steps": 0}
SCORES = [0.5, 0.3, 0.4, 0.2, 0.6]  # one per epoch


class Scored(TinyModule):
    """Logs SCORES[epoch] as "score" during validation."""

    def validation_step(self, batch, batch_idx):
        self.log("score", SCORES[self.current_epoch])


def fit(tmp_path: Path, callback: ModelCheckpoint, max_epochs: int, ckpt_path=None, **flags) -> Trainer:
    trainer = Trainer(max_epochs=max_epochs, callbacks=[callback], default_root_dir=tmp_path, **{**FLAGS, **flags})
    trainer.fit(Scored(), tiny_loader(), tiny_loader(samples=16), ckpt_path=ckpt_path)
    return trainer


def names(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


# -------------------------------------------------------------------------------------------------
# Names
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("template, metrics, expected", [
    (None, {"epoch": 3, "step": 40}, "epoch=3-step=40.ckpt"),
    ("{epoch}", {"epoch": 0}, "epoch=0.ckpt"),
    ("{epoch:03d}", {"epoch": 5}, "epoch=005.ckpt"),
    ("{epoch}-{val_loss:.2f}", {"epoch": 2, "val_loss": torch.tensor(0.123456)}, "epoch=2-val_loss=0.12.ckpt"),
    ("{missing:d}", {}, "missing=0.ckpt"),
    ("{val/acc:.1f}", {"val/acc": 0.25}, "val/acc=0.2.ckpt"),
])
def test_filename_templates_fill_in_metrics_as_lightning_does(tmp_path, template, metrics, expected):
    callback = ModelCheckpoint(dirpath=tmp_path, filename=template)
    assert callback.format_checkpoint_name(metrics) == os.path.join(os.path.realpath(tmp_path), expected)


def test_metric_names_can_be_left_out_and_versions_added(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, filename="e{epoch}-loss={val_loss:.1f}", auto_insert_metric_name=False)
    assert Path(callback.format_checkpoint_name({"epoch": 2, "val_loss": 0.44}, ver=3)).name == "e2-loss=0.4-v3.ckpt"


def test_contradictory_settings_name_the_fix():
    with pytest.raises(MisconfigurationError, match="save_top_k=3.*pass monitor="):
        ModelCheckpoint(save_top_k=3)
    with pytest.raises(MisconfigurationError, match="choose one of them"):
        ModelCheckpoint(every_n_train_steps=2, every_n_epochs=1)
    with pytest.raises(MisconfigurationError, match="mode='median'.*'min' or 'max'"):
        ModelCheckpoint(mode="median")


# -------------------------------------------------------------------------------------------------
# Top-k
# -------------------------------------------------------------------------------------------------
def top_two(tmp_path: Path, **options) -> ModelCheckpoint:
    return ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="{epoch}-{score:.1f}", monitor="score",
                           save_top_k=2, **options)


def test_top_k_keeps_the_best_files_only(tmp_path):
    callback = top_two(tmp_path)
    fit(tmp_path, callback, max_epochs=5)

    directory = tmp_path / "checkpoints"
    assert names(directory) == {"epoch=1-score=0.3.ckpt", "epoch=3-score=0.2.ckpt"}
    assert Path(callback.best_model_path).name == "epoch=3-score=0.2.ckpt"
    assert callback.best_model_score.item() == pytest.approx(0.2)
    assert (Path(callback.kth_best_model_path).name, callback.kth_value.item()) == ("epoch=1-score=0.3.ckpt", pytest.approx(0.3))
    assert {Path(path).name: round(score.item(), 1) for path, score in callback.best_k_models.items()} == {
        "epoch=1-score=0.3.ckpt": 0.3, "epoch=3-score=0.2.ckpt": 0.2}


def test_to_yaml_writes_the_best_k_models_and_their_scores(tmp_path):
    callback = top_two(tmp_path)
    fit(tmp_path, callback, max_epochs=5)
    callback.to_yaml()
    directory = tmp_path / "checkpoints"
    best, second = (f"{directory / name}: {torch.tensor(score).item()}" for name, score in
                    (("epoch=1-score=0.3.ckpt", 0.3), ("epoch=3-score=0.2.ckpt", 0.2)))
    assert (directory / "best_k_models.yaml").read_text() == f"{best}\n{second}\n"
    callback.to_yaml(tmp_path / "elsewhere.yaml")
    assert (tmp_path / "elsewhere.yaml").read_text() == f"{best}\n{second}\n"
    with pytest.raises(AssertionError, match="needs a filepath"):
        ModelCheckpoint().to_yaml()


def test_top_k_bookkeeping_carries_across_a_resume(tmp_path):
    straight = top_two(tmp_path / "straight")
    fit(tmp_path / "straight", straight, max_epochs=5)

    first = top_two(tmp_path / "resumed", save_last=True)
    fit(tmp_path / "resumed", first, max_epochs=3)
    assert names(tmp_path / "resumed" / "checkpoints") == {"epoch=1-score=0.3.ckpt", "epoch=2-score=0.4.ckpt", "last.ckpt"}
    second = top_two(tmp_path / "resumed", save_last=True)
    fit(tmp_path / "resumed", second, max_epochs=5, ckpt_path="last")

    # Epoch 2's checkpoint, written by the first run and ranked out by the resumed one, is gone: the
    # resumed run knew the ranking.
    assert names(tmp_path / "resumed" / "checkpoints") == names(tmp_path / "straight" / "checkpoints") | {"last.ckpt"}
    assert Path(second.best_model_path).name == Path(straight.best_model_path).name
    assert second.best_model_score == straight.best_model_score
    assert sorted(Path(p).name for p in second.best_k_models) == sorted(Path(p).name for p in straight.best_k_models)


def test_a_nan_score_ranks_last(tmp_path):
    class Unlucky(Scored):
        def validation_step(self, batch, batch_idx):
            self.log("score", float("nan") if self.current_epoch == 1 else SCORES[self.current_epoch])

    callback = top_two(tmp_path)
    Trainer(max_epochs=3, callbacks=[callback], default_root_dir=tmp_path, **FLAGS).fit(
        Unlucky(), tiny_loader(), tiny_loader(samples=16))
    assert names(tmp_path / "checkpoints") == {"epoch=0-score=0.5.ckpt", "epoch=2-score=0.4.ckpt"}


def test_a_monitored_metric_that_is_never_logged_names_what_was(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="val_acc")
    with pytest.raises(MisconfigurationError, match=r"monitor='val_acc'.*logged: \['epoch', 'score', 'step', 'train_loss'\]"):
        fit(tmp_path, callback, max_epochs=1)


# -------------------------------------------------------------------------------------------------
# last
# -------------------------------------------------------------------------------------------------
def test_save_last_keeps_one_last_ckpt_beside_the_latest_checkpoint(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    fit(tmp_path, callback, max_epochs=2)

    assert names(tmp_path / "checkpoints") == {"epoch=1-step=8.ckpt", "last.ckpt"}
    assert Path(callback.last_model_path).name == "last.ckpt"
    assert load_checkpoint(callback.last_model_path)["global_step"] == 8


def test_without_save_last_there_is_no_last_checkpoint(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    fit(tmp_path, callback, max_epochs=2)
    assert callback.last_model_path == "" and Path(callback.best_model_path).name == "epoch=1-step=8.ckpt"


def test_save_last_link_points_at_the_latest_checkpoint(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last="link")
    fit(tmp_path, callback, max_epochs=2)

    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_symlink() and os.readlink(last) == "epoch=1-step=8.ckpt"
    assert load_checkpoint(last)["global_step"] == 8


def test_save_last_is_written_at_the_end_when_nothing_else_was(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, every_n_epochs=5)
    fit(tmp_path, callback, max_epochs=2)
    assert names(tmp_path / "checkpoints") == {"last.ckpt"}


def test_resume_from_last_without_any_checkpoint_starts_fresh_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match='ckpt_path="last" found no checkpoint.*save_last=True'):
        trainer = fit(tmp_path, ModelCheckpoint(dirpath=tmp_path / "checkpoints"), max_epochs=1, ckpt_path="last")
    assert trainer.global_step == 4 and trainer.ckpt_path is None


def test_hpc_without_a_preemption_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(MisconfigurationError, match=r'ckpt_path="hpc".*holds no hpc_ckpt_\*\.ckpt'):
        fit(tmp_path, ModelCheckpoint(dirpath=tmp_path / "checkpoints"), max_epochs=1, ckpt_path="hpc")


# -------------------------------------------------------------------------------------------------
# When
# -------------------------------------------------------------------------------------------------
def test_every_n_train_steps_counts_optimizer_steps_under_accumulation(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_train_steps=2, save_top_k=-1)
    trainer = Trainer(max_epochs=1, accumulate_grad_batches=2, callbacks=[callback], default_root_dir=tmp_path, **FLAGS)
    trainer.fit(Scored(), tiny_loader(samples=128))  # 8 batches, 4 optimizer steps

    assert names(tmp_path / "checkpoints") == {"epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt"}
    middle = load_checkpoint(tmp_path / "checkpoints" / "epoch=0-step=2.ckpt")
    assert (middle["global_step"], middle["progress"]["batch_idx"]) == (2, 4)  # written once batch 3 completed
    end = load_checkpoint(tmp_path / "checkpoints" / "epoch=0-step=4.ckpt")
    assert (end["epoch"], end["progress"]["epoch"], end["progress"]["batch_idx"]) == (0, 1, 0)  # after the epoch


def test_every_n_epochs_skips_epochs(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_epochs=2, save_top_k=-1)
    fit(tmp_path, callback, max_epochs=5)
    assert names(tmp_path / "checkpoints") == {"epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt"}


def test_the_default_checkpoint_goes_to_the_log_dir(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **FLAGS)
    trainer.fit(TinyModule(), tiny_loader())
    assert names(tmp_path / "checkpoints") == {"epoch=0-step=4.ckpt"}


# -------------------------------------------------------------------------------------------------
# On exceptions
# -------------------------------------------------------------------------------------------------
class FailsAtStep3(TinyModule):
    def on_train_batch_start(self, batch, batch_idx):
        if self.global_step == 3:
            raise RuntimeError("boom")


def test_on_exception_checkpoint_saves_when_training_raises_and_is_removed_after_success(tmp_path):
    callback = OnExceptionCheckpoint(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path, **QUIET).fit(FailsAtStep3(), tiny_loader())
    assert load_checkpoint(tmp_path / "on_exception.ckpt")["global_step"] == 3

    Trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path, **QUIET).fit(TinyModule(), tiny_loader())
    assert not (tmp_path / "on_exception.ckpt").exists()


def test_model_checkpoint_can_save_on_exception(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_on_exception=True)
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path, **FLAGS).fit(FailsAtStep3(), tiny_loader())
    assert names(tmp_path / "checkpoints") == {"epoch=0-step=3.ckpt"}
