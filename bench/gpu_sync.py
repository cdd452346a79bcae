"""On one CUDA GPU: does the Trainer add host-device synchronisations to the training step?

Run:   python bench/gpu_sync.py [--steps 200] [--log_every_n_steps 50]

Every synchronising CUDA call (``.item()``, ``.cpu()``, ``.tolist()``, ``torch.cuda.synchronize``, a
device-to-host copy) is counted with ``torch.cuda.set_sync_debug_mode("warn")``, which makes each one warn;
the warnings are grouped by the Python line that caused them. Contenders, each over the same ``--steps``
batches already on the GPU, for "32-true", "bf16-mixed" and "16-mixed":

    raw              the hand-written loop: zero_grad, (autocast) forward, (scaled) backward, step
    tribus-bare      Trainer with progress bar, logger, checkpointing, summary and sanity check off;
                     training_step calls self.log("train_loss", loss, prog_bar=True) every step
    tribus-defaults  the same module with the Trainer's defaults on (progress bar, TensorBoard logger,
                     checkpointing), metrics flushed to the logger every ``--log_every_n_steps``; the bar
                     writes to a file (a plain line every 10 seconds)
    tribus-terminal  the same, with the bar drawn on a (simulated) terminal: it redraws every batch and
                     reads its metrics every ``metrics_interval`` (0.5 s)

The framework adds none per step when tribus-bare counts what raw counts (GradScaler's own check for
inf/nan in "16-mixed" syncs once per step in both). With defaults on, the syncs left are the logger
flushes (TensorBoard waits for the values on its writer thread, not the training thread) and the progress
bar reading its metrics, each listed by line. Without a CUDA device it says so
and exits 0.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import tempfile
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auxiliary import TQDMProgressBar
from engineering import Trainer
from overhead import Batches  # bench/ is on sys.path when a script here runs
from research import LightningModule

AUTOCAST_DTYPES = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
BARE = dict(enable_progress_bar=False, logger=False, enable_checkpointing=False,
            enable_model_summary=False, num_sanity_val_steps=0)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).cuda()


class Classifier(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_network()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        loss = F.cross_entropy(self.net(inputs), targets)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def train_raw(batches: Batches, precision: str) -> None:
    dtype = AUTOCAST_DTYPES[precision]
    net = make_network()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cuda") if dtype is torch.float16 else None
    for inputs, targets in batches:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(net(inputs), targets)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()


class Terminal(io.StringIO):
    """Says it is a terminal, so the progress bar draws tqdm bars into it."""

    def isatty(self) -> bool:
        return True


def train_tribus(batches: Batches, precision: str, defaults: bool, log_every_n_steps: int,
                 terminal: bool = False) -> None:
    flags: dict[str, Any] = {} if defaults else dict(BARE)
    if defaults:  # the bar's mode follows its stream, not the terminal this script runs in
        flags["callbacks"] = [TQDMProgressBar(stream=Terminal() if terminal else io.StringIO())]
    with tempfile.TemporaryDirectory() as root:
        trainer = Trainer(accelerator="cuda", devices=1, precision=precision, max_epochs=1, default_root_dir=root,
                          log_every_n_steps=log_every_n_steps, **flags)
        trainer.fit(Classifier(), batches)


def count_syncs(run: Any) -> collections.Counter:
    """Run ``run()`` with synchronising CUDA calls turned into warnings; count them by source line."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return collections.Counter(
        f"{os.path.relpath(w.filename, ROOT) if w.filename.startswith(ROOT) else w.filename}:{w.lineno}"
        for w in caught if str(w.message).startswith("called a synchronizing")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--log_every_n_steps", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return

    generator = torch.Generator(device="cuda").manual_seed(1)
    batches = Batches([(torch.randn(64, 256, device="cuda", generator=generator),
                        torch.randint(0, 10, (64,), device="cuda", generator=generator)) for _ in range(args.steps)])
    train_raw(Batches(batches.items[:10]), "16-mixed")  # warm-up: CUDA context, kernels
    train_tribus(Batches(batches.items[:10]), "16-mixed", defaults=True, log_every_n_steps=args.log_every_n_steps)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, {args.steps} steps, "
          f"log_every_n_steps={args.log_every_n_steps}")
    print(f"{'precision':<12}{'contender':<17}{'syncs':>7}{'per step':>10}   where (file:line count)")
    for precision in AUTOCAST_DTYPES:
        contenders = {
            "raw": lambda: train_raw(batches, precision),
            "tribus-bare": lambda: train_tribus(batches, precision, False, args.log_every_n_steps),
            "tribus-defaults": lambda: train_tribus(batches, precision, True, args.log_every_n_steps),
            "tribus-terminal": lambda: train_tribus(batches, precision, True, args.log_every_n_steps, terminal=True),
        }
        for name, run in contenders.items():
            syncs = count_syncs(run)
            total = sum(syncs.values())
            where = ", ".join(f"{line} ×{count}" for line, count in syncs.most_common(6))
            print(f"{precision:<12}{name:<17}{total:>7}{total / args.steps:>10.2f}   {where}")


if __name__ == "__main__":
    main()
