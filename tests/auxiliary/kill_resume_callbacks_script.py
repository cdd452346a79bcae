"""A run with one of the callbacks whose state must survive a SIGKILL; tests/auxiliary/test_callbacks_kill_resume.py kills it.

    python kill_resume_callbacks_script.py ROOT CALLBACK      CALLBACK: swa | ema | timer | accumulation

Trains a small classifier for 4 epochs of 6 batches, writing ROOT/checkpoints/last.ckpt after every optimizer
step and always asking to resume from ckpt_path="last". A step sleeps ``STEP_SECONDS`` so that it can be
killed mid-run; for the Timer, each step also advances a stand-in clock by one second (the budget is 17 s),
so the budget is spent at the same step in every run. Prints ``STEP <global_step>`` after each optimizer step
and ``DONE`` after writing ROOT/final.pt (the weights).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import auxiliary.timer
from auxiliary import EMAWeightAveraging, GradientAccumulationScheduler, StochasticWeightAveraging, Timer
from engineering import Callback, ModelCheckpoint, Trainer, seed_everything
from research import LightningModule

STEP_SECONDS = 0.1


class SteppedClock:
    """The Timer's clock: one second per training step, carried on across processes by the Timer's own state."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


CLOCK = SteppedClock()


class Classifier(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def training_step(self, batch, batch_idx):
        time.sleep(STEP_SECONDS)
        CLOCK.now += 1.0
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class Announce(Callback):
    def __init__(self) -> None:
        self.announced = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.announced:
            self.announced = trainer.global_step
            print(f"STEP {trainer.global_step}", flush=True)


CALLBACKS = {
    "swa": lambda: StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2),
    "ema": lambda: EMAWeightAveraging(decay=0.8),
    "timer": lambda: Timer(duration={"seconds": 17}, verbose=False),
    "accumulation": lambda: GradientAccumulationScheduler({1: 2, 2: 3}),
}


def main(root: Path, callback: str) -> None:
    torch.set_num_threads(1)
    auxiliary.timer.time = CLOCK
    seed_everything(0)
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(24, 8, generator=generator), torch.randint(0, 2, (24,), generator=generator))
    model = Classifier()
    saver = ModelCheckpoint(dirpath=root / "checkpoints", save_top_k=0, save_last=True, every_n_train_steps=1)
    trainer = Trainer(max_epochs=4, default_root_dir=root, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[CALLBACKS[callback](), Announce(), saver])
    trainer.fit(model, DataLoader(data, batch_size=4, shuffle=True), ckpt_path="last")
    torch.save({"state_dict": model.state_dict(), "global_step": trainer.global_step}, root / "final.pt")
    print("DONE", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
