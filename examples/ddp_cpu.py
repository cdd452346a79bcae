"""Data-parallel training on the CPU: two processes over gloo, as on two GPUs, without any GPU.

    python examples/ddp_cpu.py                                          # 2 processes, 20 epochs, seconds
    python examples/ddp_cpu.py --max_epochs 1 --limit_train_batches 2   # a smoke run

``Trainer(accelerator="cpu", devices=2, strategy="ddp")`` is the whole change from one process. Run the
script as usual: tribus starts rank 1 itself by running this same command again, so everything before
``fit`` runs in both processes; data made from a seed is then the same in both. Each rank trains on its
own half of every global batch (the Trainer shards the training loader), DistributedDataParallel
averages the gradients, and both ranks take the same optimizer step. At the end the ranks compare
their weights, and rank 0 prints the result; `torchrun --nproc_per_node=2 examples/ddp_cpu.py` runs the
same job with torchrun starting the processes (docs/scaling.md).

The task: tell points inside the unit circle from points outside it.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Trainer, seed_everything
from research import LightningModule


def disc_dataset(count: int, seed: int) -> TensorDataset:
    """``count`` points in [-1.5, 1.5]², labelled 1 inside the unit circle and 0 outside."""
    points = 3 * torch.rand(count, 2, generator=torch.Generator().manual_seed(seed)) - 1.5
    return TensorDataset(points, (points.norm(dim=1) < 1).long())


class DiscClassifier(LightningModule):
    def __init__(self, hidden: int = 32, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2))
        self.samples_trained_on = 0  # by this rank: about half of all, with two ranks

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.network(points)

    def training_step(self, batch, batch_idx):
        points, labels = batch
        self.samples_trained_on += len(points)
        loss = F.cross_entropy(self(points), labels)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)  # the mean over ranks: the global batch's loss
        return loss

    def validation_step(self, batch, batch_idx):
        points, labels = batch
        # Validation is not sharded: each rank scores the whole set, so its accuracy is already the global one.
        self.log("val_acc", (self(points).argmax(dim=1) == labels).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def on_train_end(self) -> None:
        # Every rank runs this hook, and the ranks still share a process group: compare notes. all_gather stacks
        # what each rank gives along a new first dimension, one row per rank.
        self.ranks_finished = self.all_gather(self.global_rank).reshape(-1).tolist()
        self.samples_per_rank = self.all_gather(self.samples_trained_on).reshape(-1).tolist()
        every_rank = self.all_gather(torch.cat([parameter.detach().flatten() for parameter in self.parameters()]))
        every_rank = every_rank.reshape(self.trainer.world_size, -1)
        self.weights_identical_across_ranks = bool((every_rank == every_rank[0]).all())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2, help="processes to train with")
    parser.add_argument("--max_epochs", type=int, default=20)
    parser.add_argument("--limit_train_batches", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--global_batch_size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    train, validation = disc_dataset(args.samples, seed=args.seed), disc_dataset(1024, seed=args.seed + 1)
    # A rank's loader holds its share of the global batch; the Trainer hands each rank different samples.
    train_loader = DataLoader(train, batch_size=args.global_batch_size // args.devices, shuffle=True)
    model = DiscClassifier()
    limit = int(args.limit_train_batches) if args.limit_train_batches > 1 else args.limit_train_batches
    trainer = Trainer(accelerator="cpu", devices=args.devices, strategy="ddp", max_epochs=args.max_epochs,
                      limit_train_batches=limit, enable_checkpointing=False)
    trainer.fit(model, train_loader, DataLoader(validation, batch_size=1024))

    if trainer.is_global_zero:  # both processes get here; one report is enough
        print(f"ranks that finished training: {model.ranks_finished}")
        print(f"samples trained on per rank: {model.samples_per_rank}")
        print(f"weights identical across ranks: {model.weights_identical_across_ranks}")
        print(f"val_acc: {trainer.callback_metrics['val_acc'].item():.4f}")


if __name__ == "__main__":
    main()
