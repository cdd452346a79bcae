"""A callback written for Lightning 2.x runs unchanged once its import says ``auxiliary``."""

from __future__ import annotations

from typing import Any

import torch

# The only line that differs from the Lightning original: `from lightning.pytorch.callbacks import Callback`.
from engineering import Callback
from engineering import Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


# ----- as a Lightning user wrote it --------------------------------------------------------------
class Counter(Callback):
    """Lightning's docs example of a stateful callback, plus the hooks such callbacks commonly use."""

    def __init__(self, what: str = "epochs", verbose: bool = True) -> None:
        self.what = what
        self.verbose = verbose
        self.state = {"epochs": 0, "batches": 0}
        self.events: list[str] = []
        self.best_loss = float("inf")

    @property
    def state_key(self) -> str:
        return f"Counter[what={self.what}]"

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.events.append(f"setup:{stage}")

    def on_train_epoch_end(self, *args, **kwargs):
        if self.what == "epochs":
            self.state["epochs"] += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.what == "batches":
            self.state["batches"] += 1
        self.best_loss = min(self.best_loss, outputs["loss"].item())

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            pl_module.log("seen_epochs", float(self.state["epochs"]))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["counter_note"] = f"{self.what}@{trainer.global_step}"

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.events.append(f"exception:{type(exception).__name__}")

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.events.append(f"teardown:{stage}")

    def load_state_dict(self, state_dict):
        self.state.update(state_dict)

    def state_dict(self):
        return self.state.copy()
# --------------------------------------------------------------------------------------------------


def test_a_lightning_callback_runs_saves_and_resumes_unchanged(tmp_path):
    counter = Counter(what="batches")
    trainer = Trainer(max_epochs=2, callbacks=[counter], default_root_dir=tmp_path,
                      **{**QUIET, "enable_checkpointing": True})
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader())
    assert counter.state == {"epochs": 0, "batches": 8}
    assert counter.events == ["setup:fit", "teardown:fit"]
    assert counter.best_loss < 1.0
    assert trainer.callback_metrics["seen_epochs"].item() == 0.0

    saved = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert saved["callbacks"]["Counter[what=batches]"] == {"epochs": 0, "batches": 8}
    assert saved["counter_note"] == "batches@8"

    resumed = Counter(what="batches")
    Trainer(max_epochs=3, callbacks=[resumed], default_root_dir=tmp_path, **QUIET).fit(
        TinyModule(), tiny_loader(), tiny_loader(), ckpt_path=trainer.checkpoint_callback.best_model_path
    )
    assert resumed.state["batches"] == 12


def test_a_lightning_callback_hears_the_exception(tmp_path):
    class Exploding(TinyModule):
        def training_step(self, batch, batch_idx):
            raise ValueError("bad batch")

    counter = Counter()
    trainer = Trainer(max_epochs=1, callbacks=[counter], default_root_dir=tmp_path, **QUIET)
    try:
        trainer.fit(Exploding(), tiny_loader())
    except ValueError:
        pass
    assert counter.events == ["setup:fit", "exception:ValueError", "teardown:fit"]
