"""Exact resume: a run that crashes mid-epoch and resumes from its checkpoint ends as if it never stopped.

    python examples/resume.py                                   # seconds
    python examples/resume.py --max_epochs 2 --samples 256 --every_n_train_steps 4 --crash_at_step 11   # a smoke run

The same training runs three times, with everything that makes resuming hard: shuffled data, dropout,
Adam, a learning rate that changes every step.

1. Uninterrupted, as the reference.
2. With ``ModelCheckpoint(every_n_train_steps=..., save_last=True)``, and a callback that raises in the
   middle of an epoch, as a machine failure would. The steps since the last checkpoint are lost.
3. A fresh process would do exactly this: build a new model and Trainer, and call
   ``fit(..., ckpt_path="last")``. Training continues from the last checkpoint: the same batch of the same
   epoch, the same data order, the same dropout masks, the same optimizer and scheduler state.

The script prints where run 3 started and whether its final weights and optimizer state equal run 1's.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback
from engineering import ModelCheckpoint, Trainer, seed_everything
from research import LightningModule

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)  # three runs: keep output short


class MachineFailure(RuntimeError):
    """Stands in for whatever ends a real run early: a lost node, an out-of-memory kill."""


class CrashAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise MachineFailure(f"simulated failure at global_step {self.step} (epoch {trainer.current_epoch})")


class NoisyRegression(LightningModule):
    """An MLP with dropout fitting y = sin(3x); its learning rate follows a cosine, stepped every batch."""

    def __init__(self, hidden: int = 64, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Dropout(0.1), nn.Linear(hidden, 1))
        self.started_at: tuple[int, int] | None = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.network(x), y)
        self.log("train_loss", loss)
        return loss

    def on_train_start(self) -> None:
        # A resumed run has restored its progress by now: this is where it picks up.
        self.started_at = (self.current_epoch, self.global_step)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def sine_dataset(count: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = 4 * torch.rand(count, 1, generator=generator) - 2
    return TensorDataset(x, torch.sin(3 * x) + 0.1 * torch.randn(count, 1, generator=generator))


def train(
    args: argparse.Namespace, root: Path, seed: int, callbacks: tuple[Callback, ...] = (), ckpt_path: str | None = None
) -> tuple[NoisyRegression, Trainer]:
    """One run in ``root``, checkpointing every ``--every_n_train_steps`` optimizer steps."""
    seed_everything(seed)  # the initial weights and the data order; a resumed run takes both from its checkpoint
    model = NoisyRegression()
    loader = DataLoader(sine_dataset(args.samples, seed=args.seed), batch_size=args.batch_size, shuffle=True)
    checkpoints = ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=args.every_n_train_steps,
                                  save_last=True)
    trainer = Trainer(max_epochs=args.max_epochs, callbacks=[*callbacks, checkpoints], default_root_dir=root, **QUIET)
    trainer.fit(model, loader, ckpt_path=ckpt_path)
    return model, trainer


def identical(first: object, second: object) -> bool:
    """Two state dicts (nested containers of tensors and numbers) equal, every tensor bit for bit."""
    if isinstance(first, torch.Tensor):
        return torch.equal(first, second)
    if isinstance(first, dict):
        return first.keys() == second.keys() and all(identical(first[key], second[key]) for key in first)
    if isinstance(first, (list, tuple)):
        return len(first) == len(second) and all(map(identical, first, second))
    return first == second


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--every_n_train_steps", type=int, default=10)
    parser.add_argument("--crash_at_step", type=int, default=75)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    total_steps = math.ceil(args.samples / args.batch_size) * args.max_epochs
    if not args.every_n_train_steps < args.crash_at_step < total_steps:
        parser.error(f"--crash_at_step must come after the first checkpoint (step {args.every_n_train_steps}) "
                     f"and before the end of training (step {total_steps})")

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        reference, reference_trainer = train(args, root / "uninterrupted", seed=args.seed)
        print(f"uninterrupted: global_step {reference_trainer.global_step}")

        try:
            train(args, root / "interrupted", seed=args.seed, callbacks=(CrashAtStep(args.crash_at_step),))
        except MachineFailure as failure:
            print(f"interrupted: {failure}")

        # Another seed: the resumed model starts from other random weights, so only the checkpoint can set them.
        resumed, resumed_trainer = train(args, root / "interrupted", seed=args.seed + 1, ckpt_path="last")
        epoch, step = resumed.started_at
        print(f"resumed from {Path(resumed_trainer.ckpt_path).name}: epoch {epoch}, global_step {step}; "
              f"finished at global_step {resumed_trainer.global_step}")

        print(f"weights identical: {identical(reference.state_dict(), resumed.state_dict())}")
        print(f"optimizer state identical: "
              f"{identical(reference_trainer.optimizers[0].state_dict(), resumed_trainer.optimizers[0].state_dict())}")


if __name__ == "__main__":
    main()
