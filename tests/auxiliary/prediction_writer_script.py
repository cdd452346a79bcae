"""Predict with a file-writing BasePredictionWriter, under DDP when launched by torchrun.

    python prediction_writer_script.py OUT_DIR WRITE_INTERVAL [DEVICES]

Each rank predicts its shard of 20 samples (a DistributedSampler without shuffling, batches of 3) and writes
``batch-{rank}-{batch_idx}.pt`` per batch and/or ``epoch-{rank}.pt`` per pass, each holding the predictions
and the dataset indices they belong to.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from auxiliary import BasePredictionWriter
from engineering import Trainer
from research import LightningModule

SAMPLES = 20


class Doubler(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Linear(1, 1)  # DDP needs a parameter to wrap

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        (x,) = batch
        return 2 * x


class FileWriter(BasePredictionWriter):
    def __init__(self, out: Path, write_interval: str) -> None:
        super().__init__(write_interval)
        self.out = out

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        torch.save({"prediction": prediction, "indices": batch_indices},
                   self.out / f"batch-{trainer.global_rank}-{batch_idx}.pt")

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        torch.save({"predictions": predictions, "indices": batch_indices}, self.out / f"epoch-{trainer.global_rank}.pt")


def main(out: Path, write_interval: str, devices: int) -> None:
    trainer = Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                      callbacks=[FileWriter(out, write_interval)], logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, default_root_dir=out)
    dataset = TensorDataset(torch.arange(SAMPLES, dtype=torch.float32).unsqueeze(1))
    # torchrun's variables: the ranks are known before the process group exists
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
    trainer.predict(Doubler(), DataLoader(dataset, batch_size=3, sampler=sampler), return_predictions=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
