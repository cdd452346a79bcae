"""A small training run that tests/e2e/test_kill_resume.py kills and resumes.

    python kill_resume_script.py ROOT [--ballast-mb 8] [--step-seconds 0.02] [--val-seconds 0]
                                 [--val-batch-size 16] [--on-exception-checkpoint] [--csv-logs]
                                 [--num-workers 0 [--kill-worker-at SAMPLE]]

or, from a process forked by a multiprocessing fork server that preloaded this module,
``run_logged([ROOT, ...], log_path)``: the same run, printing to ``log_path``.

Trains with shuffled data, dropout, Adam, a per-step scheduler and gradient accumulation, checkpointing
after every optimizer step (top-2 by train_loss, plus last.ckpt) under ROOT/checkpoints, always asking to
resume from ckpt_path="last"; ``--on-exception-checkpoint`` adds an OnExceptionCheckpoint in ROOT/on_exception,
``--csv-logs`` a CSVLogger in ROOT/logs logging every step, and ``--val-seconds`` slows every validation batch.
``--kill-worker-at`` makes the DataLoader worker that reads that sample SIGKILL itself, once (it leaves its pid in
ROOT/killed_worker first).
It prints, unbuffered, what the test waits for:
    RESUMED <epoch> <batch_idx>   where training starts (0 0 for a fresh run)
    STEP <global_step>            after each optimizer step
    VAL <batch_idx>               after each validation batch, when --val-seconds is set
    SAVE                          as a checkpoint starts to be written (its ballast makes the write slow)
    EXCEPTION <type>              in on_exception
    TEARDOWN                      in teardown
    DONE                          after ROOT/final.pt (weights and optimizer state) is written
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset, get_worker_info

from auxiliary import CSVLogger
from engineering import Callback, ModelCheckpoint, OnExceptionCheckpoint, Trainer, seed_everything
from research import LightningModule


# Building the first optimizer imports torch's compiler stack (about 2 s). Paying it here, at import, lets a
# fork server that preloads this module start each killed-and-resumed run in milliseconds.
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)


class Classifier(LightningModule):
    def __init__(self, ballast_mb: float = 0.0, step_seconds: float = 0.0, val_seconds: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Dropout(0.2), torch.nn.Linear(32, 2))

    def training_step(self, batch, batch_idx):
        time.sleep(self.hparams.step_seconds)  # a step long enough to be killed in
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))
        if self.hparams.val_seconds and not self.trainer.sanity_checking:
            time.sleep(self.hparams.val_seconds)  # a validation long enough to be signalled in
            print(f"VAL {batch_idx}", flush=True)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=0.01)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.8)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        print("SAVE", flush=True)
        checkpoint["ballast"] = torch.zeros(int(self.hparams.ballast_mb * 2**18))  # float32: 4 bytes each


class KillsItsWorker(Dataset):
    """The training data; the worker process that reads sample ``kill_at`` kills itself, the first time only."""

    def __init__(self, data: TensorDataset, kill_at: int, marker: Path) -> None:
        self.data, self.kill_at, self.marker = data, kill_at, marker

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        if index == self.kill_at and get_worker_info() is not None and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
        return self.data[index]


class Announce(Callback):
    def on_train_start(self, trainer, pl_module):
        print(f"RESUMED {trainer.current_epoch} {trainer.progress.batch_idx}", flush=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            print(f"STEP {trainer.global_step}", flush=True)

    def on_exception(self, trainer, pl_module, exception):
        print(f"EXCEPTION {type(exception).__name__}", flush=True)

    def teardown(self, trainer, pl_module, stage):
        print("TEARDOWN", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--ballast-mb", type=float, default=8.0)
    parser.add_argument("--step-seconds", type=float, default=0.02)
    parser.add_argument("--async-save", action="store_true", help="ModelCheckpoint(async_save=True)")
    parser.add_argument("--val-seconds", type=float, default=0.0)
    parser.add_argument("--val-batch-size", type=int, default=16)
    parser.add_argument("--on-exception-checkpoint", action="store_true")
    parser.add_argument("--csv-logs", action="store_true")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--kill-worker-at", type=int, default=-1)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # a tiny model: threads only contend, above all when runs share the machine
    seed_everything(0)
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(48, 8, generator=generator), torch.randint(0, 2, (48,), generator=generator))
    model = Classifier(args.ballast_mb, args.step_seconds, args.val_seconds)
    callbacks = [Announce(), ModelCheckpoint(dirpath=args.root / "checkpoints", monitor="train_loss", save_top_k=2,
                                             save_last=True, every_n_train_steps=1, async_save=args.async_save)]
    if args.on_exception_checkpoint:
        callbacks.append(OnExceptionCheckpoint(args.root / "on_exception"))
    trainer = Trainer(
        max_epochs=4, accumulate_grad_batches=2, val_check_interval=6, default_root_dir=args.root,
        logger=CSVLogger(args.root / "logs") if args.csv_logs else False, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
    )
    train_data = KillsItsWorker(data, args.kill_worker_at, args.root / "killed_worker")
    trainer.fit(model, DataLoader(train_data, batch_size=4, shuffle=True, num_workers=args.num_workers),
                DataLoader(data, batch_size=args.val_batch_size), ckpt_path="last")
    torch.save({"state_dict": model.state_dict(), "optimizer": trainer.optimizers[0].state_dict()},
               args.root / "final.pt")
    print("DONE", flush=True)


def run_logged(argv: list[str], log_path: str) -> None:
    sys.stdout = sys.stderr = open(log_path, "w", buffering=1)  # line-buffered: every line is out before a kill
    main(argv)


if __name__ == "__main__":
    main()
