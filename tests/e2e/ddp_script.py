"""Train a tiny model with DDP on CPU; each rank saves what the test compares.

    python ddp_script.py OUT_DIR [--strategy ddp|ddp_spawn|auto] [--devices 2] [--max-epochs 2]
                         [--die-at STEP --die-rank R [--hang]] [--timeout SECONDS] [--step-seconds S]

Run directly (tribus launches the other rank), under torchrun, or under a faked SLURM environment.

Into OUT_DIR, at the end of fit, every rank R writes ``weights.rank{R}.pt`` and ``metrics.rank{R}.json``
(callback_metrics, world_size, global_step, its ranks, its pid, the checkpoint it resumed from, and the sample
indices it trained on at each global step). Every prepare_data call leaves a ``prepare_data.<pid>`` file. Under
ddp_spawn the process that called ``fit`` also writes ``weights.parent.pt`` and ``metrics.parent.json``: what
it holds after fit. ``--die-at`` makes rank ``--die-rank`` exit abruptly at that global step (or, with
``--hang``, stall there), after writing ``died.rank{R}.json`` (or ``stalled.rank{R}.json``) with the time and
its pid. ``--step-seconds`` slows each step and prints ``rank R step S``, so that a test can signal a run
mid-training.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from engineering import DDPStrategy, Trainer, seed_everything
from engineering.utilities import rank_zero_only
from research import LightningDataModule, LightningModule

GLOBAL_BATCH = 8
SAMPLES = 64


class Regression(LightningModule):
    def __init__(self, out: str, die_at: int = -1, die_rank: int = -1, hang: bool = False,
                 step_seconds: float = 0.0) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.out, self.die_at, self.die_rank, self.hang = out, die_at, die_rank, hang
        self.step_seconds = step_seconds
        self.seen: list[list] = []  # [global_step, sample indices] for every batch this rank trained on

    def training_step(self, batch, batch_idx):
        if self.global_step == self.die_at and self.global_rank == self.die_rank:
            # When and where it happened, for the test to time the other ranks against.
            what = "stalled" if self.hang else "died"
            Path(self.out, f"{what}.rank{self.global_rank}.json").write_text(
                json.dumps({"time": time.time(), "pid": os.getpid()})
            )
            if self.hang:
                time.sleep(3600)  # a rank stalls (a deadlock, a dead filesystem) without dying
            os._exit(17)  # a rank dies without a word, as after an OOM kill
        if self.step_seconds:
            time.sleep(self.step_seconds)
            print(f"rank {self.global_rank} step {self.global_step}", flush=True)
        x, y, index = batch
        self.seen.append([self.global_step, index.tolist()])
        loss = F.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, sync_dist=True)
        self.log("rank_value", float(self.global_rank), on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_fit_end(self) -> None:
        # Runs in every rank's process, however the ranks were started (under ddp_spawn, in the children).
        trainer = self.trainer
        write_results(self, trainer, Path(self.out), f"rank{trainer.global_rank}", batches=self.seen)


class Data(LightningDataModule):
    def __init__(self, marker_dir: str, per_rank_batch: int) -> None:
        super().__init__()
        self.marker_dir, self.per_rank_batch = Path(marker_dir), per_rank_batch

    def prepare_data(self) -> None:
        # Every call leaves a file: the test counts them to see prepare_data ran once.
        (self.marker_dir / f"prepare_data.{os.getpid()}").write_text("")

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(SAMPLES, 4, generator=generator)
        y = x.sum(dim=1, keepdim=True)
        return DataLoader(TensorDataset(x, y, torch.arange(SAMPLES)), batch_size=self.per_rank_batch, shuffle=False)


@rank_zero_only
def rank_zero_says_yes() -> str:
    return "yes"


def write_results(model: LightningModule, trainer: Trainer, out: Path, name: str, **extra) -> None:
    torch.save(model.state_dict(), out / f"weights.{name}.pt")
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
    (out / f"metrics.{name}.json").write_text(json.dumps({
        "metrics": metrics, "world_size": trainer.world_size, "global_step": trainer.global_step,
        "global_rank": trainer.global_rank, "local_rank": trainer.local_rank, "node_rank": trainer.node_rank,
        "pid": os.getpid(), "ckpt_path": trainer.ckpt_path, "threads": torch.get_num_threads(),
        "rank_zero_only_rank": rank_zero_only.rank, "rank_zero_only_ran": rank_zero_says_yes() is not None, **extra,
    }))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--die-at", type=int, default=-1)
    parser.add_argument("--die-rank", type=int, default=-1)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    seed_everything(0)
    trainer = Trainer(
        accelerator="cpu", devices=args.devices, max_epochs=args.max_epochs,
        default_root_dir=out, enable_progress_bar=False, enable_model_summary=False,
        strategy=DDPStrategy(timeout=datetime.timedelta(seconds=args.timeout)) if args.strategy == "ddp" else args.strategy,
    )
    model = Regression(str(out), args.die_at, args.die_rank, args.hang, args.step_seconds)
    trainer.fit(model, datamodule=Data(str(out), GLOBAL_BATCH // args.devices))
    if args.strategy == "ddp_spawn":  # only the process that called fit gets here: what does it hold now?
        write_results(model, trainer, out, "parent")


if __name__ == "__main__":
    main()
