"""Checkpoint: the base class Lightning code checks with isinstance, and subclasses for custom checkpointing."""

from __future__ import annotations

from auxiliary import Checkpoint, EarlyStopping
from engineering import Callback, ModelCheckpoint, OnExceptionCheckpoint, Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


def test_the_checkpoint_callbacks_are_checkpoints_and_others_are_not(tmp_path):
    assert isinstance(ModelCheckpoint(), Checkpoint)
    assert isinstance(OnExceptionCheckpoint(tmp_path), Checkpoint)
    assert not isinstance(EarlyStopping("loss"), Checkpoint)
    assert issubclass(Checkpoint, Callback)


def test_a_subclass_is_a_callback_that_runs(tmp_path):
    class SaveAtEnd(Checkpoint):
        def on_train_end(self, trainer, pl_module):
            trainer.save_checkpoint(tmp_path / "end.ckpt")

    callback = SaveAtEnd()
    Trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path, **QUIET).fit(TinyModule(), tiny_loader())
    assert (tmp_path / "end.ckpt").is_file()
    assert [c for c in [callback, EarlyStopping("x")] if isinstance(c, Checkpoint)] == [callback]
