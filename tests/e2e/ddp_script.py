"""Train a tiny model with DDP on CPU; each rank saves what the test compares.

    python ddp_script.py OUT_DIR [--strategy ddp|ddp_spawn] [--devices 2] [--die-at STEP --die-rank R]
                         [--timeout SECONDS]

Run directly (tribus launches the other rank), under torchrun, or under a faked SLURM environment.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from engineering import DDPStrategy, Trainer, seed_everything
from research import LightningDataModule, LightningModule

GLOBAL_BATCH = 8


class Regression(LightningModule):
    def __init__(self, die_at: int = -1, die_rank: int = -1) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.die_at, self.die_rank = die_at, die_rank

    def training_step(self, batch, batch_idx):
        if self.global_step == self.die_at and self.global_rank == self.die_rank:
            os._exit(17)  # a rank dies without a word, as after an OOM kill
        x, y = batch
        loss = F.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, sync_dist=True)
        self.log("rank_value", float(self.global_rank), on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Data(LightningDataModule):
    def __init__(self, marker_dir: str, per_rank_batch: int) -> None:
        super().__init__()
        self.marker_dir, self.per_rank_batch = Path(marker_dir), per_rank_batch

    def prepare_data(self) -> None:
        # Every call leaves a file: the test counts them to see prepare_data ran once.
        (self.marker_dir / f"prepare_data.{os.getpid()}").write_text("")

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=generator)
        y = x.sum(dim=1, keepdim=True)
        return DataLoader(TensorDataset(x, y), batch_size=self.per_rank_batch, shuffle=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--die-at", type=int, default=-1)
    parser.add_argument("--die-rank", type=int, default=-1)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    out = Path(args.out)
    seed_everything(0)
    trainer = Trainer(
        accelerator="cpu", devices=args.devices, max_epochs=2,
        default_root_dir=out, enable_progress_bar=False, enable_model_summary=False,
        strategy=DDPStrategy(timeout=datetime.timedelta(seconds=args.timeout)) if args.strategy == "ddp" else args.strategy,
    )
    model = Regression(args.die_at, args.die_rank)
    trainer.fit(model, datamodule=Data(str(out), GLOBAL_BATCH // args.devices))
    rank = trainer.global_rank
    torch.save(model.state_dict(), out / f"weights.rank{rank}.pt")
    metrics = {key: value.item() for key, value in trainer.callback_metrics.items()}
    (out / f"metrics.rank{rank}.json").write_text(json.dumps({"metrics": metrics, "world_size": trainer.world_size,
                                                               "global_step": trainer.global_step}))


if __name__ == "__main__":
    main()
