"""Truncated backpropagation through time: a GRU learns to echo its input three steps late.

    python examples/tbptt.py                                      # 8 epochs, under a minute on CPU
    python examples/tbptt.py --max_epochs 1 --limit_train_batches 2   # a smoke run

Each training sequence is 60 steps long. With ``truncated_bptt_steps = 10`` the Trainer cuts every batch
into six chunks of 10 steps and takes one optimizer step per chunk. The GRU's hidden state flows from one
chunk into the next (``training_step`` receives it as ``hiddens`` and returns the new one), detached, so
gradients stop at chunk boundaries while the state, and with it the memory of the last inputs, goes on.
Validation runs the whole 60 steps at once. The script prints the validation error next to the error of
always predicting 0 (about 1, the inputs' variance).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Trainer, seed_everything
from research import LightningModule

DELAY = 3  # the target at time t is the input at time t - DELAY


def echo_sequences(count: int, length: int = 60) -> TensorDataset:
    """Random inputs ``[count, length, 1]`` and the same sequence shifted DELAY steps later (zeros first)."""
    inputs = torch.randn(count, length, 1)
    targets = torch.zeros_like(inputs)
    targets[:, DELAY:] = inputs[:, :-DELAY]
    return TensorDataset(inputs, targets)


class Echo(LightningModule):
    def __init__(self, hidden: int = 32, chunk: int = 10, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.truncated_bptt_steps = chunk  # the Trainer splits batches along dim 1 (time) into chunks this long
        self.rnn = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, hiddens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, hiddens = self.rnn(x, hiddens)
        return self.head(out), hiddens

    def training_step(self, batch, batch_idx, hiddens):
        x, y = batch  # one chunk: [batch, chunk, 1]; hiddens is None for the first chunk of a batch
        prediction, hiddens = self(x, hiddens)
        loss = F.mse_loss(prediction, y)
        self.log("train_mse", loss, prog_bar=True)
        return {"loss": loss, "hiddens": hiddens}  # the Trainer detaches hiddens and hands them to the next chunk

    def validation_step(self, batch, batch_idx):
        x, y = batch  # whole sequences: evaluation is not split
        prediction, _ = self(x)
        self.log("val_mse", F.mse_loss(prediction, y), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_epochs", type=int, default=8)
    parser.add_argument("--limit_train_batches", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    train = DataLoader(echo_sequences(args.samples), batch_size=args.batch_size, shuffle=True)
    val = DataLoader(echo_sequences(256), batch_size=256)
    limit = int(args.limit_train_batches) if args.limit_train_batches > 1 else args.limit_train_batches
    trainer = Trainer(max_epochs=args.max_epochs, limit_train_batches=limit, enable_checkpointing=False, logger=False)
    trainer.fit(Echo(), train, val)

    chunks = -(-60 // trainer.lightning_module.truncated_bptt_steps)
    print(f"optimizer steps: {trainer.global_step} ({chunks} per batch)")
    print(f"validation mse: {trainer.callback_metrics['val_mse'].item():.4f} (predicting 0 gives about 1)")


if __name__ == "__main__":
    main()
