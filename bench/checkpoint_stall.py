"""How long a checkpoint holds up training: ModelCheckpoint with and without ``async_save``.

Run:   python bench/checkpoint_stall.py [--state-mb 256] [--steps 60] [--every 10] [--rounds 3]

The model is a stack of square ``nn.Linear`` layers whose weights total ``--state-mb`` MB (float32), trained
with plain SGD (no optimizer state) on random batches of 8, ``torch.set_num_threads(1)``. A ModelCheckpoint saves
every ``--every`` optimizer steps into a temporary directory (keeping the latest file). A callback stamps the
start of each batch: the gap between two starts is one step plus whatever the checkpoint made the training
thread do. The stall of a checkpoint is the gap after it minus the median gap of the steps without one. A
background write also competes with training for the CPU (and the GIL while torch serializes), which slows
the steps after it: the whole fit's time against a run without checkpoints shows that full cost.

Reported per mode, over every checkpoint of every round: the stall's median and min–max, the synchronous
write time for comparison, the whole fit's time, and whether the final weights of the two modes are bitwise equal (they must be).
Both modes run in this process, rounds interleaved, so they meet the same disk and the same load.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback, ModelCheckpoint, Trainer, seed_everything
from research import LightningModule

WIDTH = 2048  # one layer: WIDTH² float32 weights, 16 MiB


class Stack(LightningModule):
    def __init__(self, layers: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(nn.Linear(WIDTH, WIDTH, bias=False) for _ in range(layers)))

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.layers(x).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-6)


class BatchClock(Callback):
    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(time.perf_counter())


def train(async_save: bool | None, layers: int, steps: int, every: int) -> tuple[list[float], list[float], float, torch.Tensor]:
    """(gaps after a checkpoint, gaps without one, seconds in fit, final weights of the first layer);
    ``async_save=None``: no checkpointing at all, the baseline."""
    seed_everything(0)
    data = TensorDataset(torch.randn((steps + 1) * 8, WIDTH))  # one more batch: the last checkpoint is mid-epoch
    model, clock = Stack(layers), BatchClock()
    with tempfile.TemporaryDirectory() as directory:
        callbacks = [clock] if async_save is None else [
            clock, ModelCheckpoint(dirpath=directory, every_n_train_steps=every, async_save=async_save)]
        trainer = Trainer(max_epochs=1, callbacks=callbacks, logger=False, enable_progress_bar=False,
                          enable_model_summary=False, num_sanity_val_steps=0,
                          enable_checkpointing=async_save is not None)
        started = time.perf_counter()
        trainer.fit(model, DataLoader(data, batch_size=8))
        seconds = time.perf_counter() - started  # fit returns once the last file is written
    gaps = [later - earlier for earlier, later in zip(clock.starts, clock.starts[1:])]
    saved = [gap for step, gap in enumerate(gaps, start=1) if step % every == 0]
    plain = [gap for step, gap in enumerate(gaps, start=1) if step % every != 0]
    return saved, plain, seconds, model.layers[0].weight.detach().clone()


def write_seconds(layers: int) -> float:
    """One synchronous save of the same state, timed alone."""
    from research.checkpoint_io import save_atomically

    state = Stack(layers).state_dict()
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        save_atomically({"state_dict": state}, f"{directory}/alone.ckpt")
        return time.perf_counter() - started


def spread(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:8.1f} ms  ({min(values) * 1e3:.1f}–{max(values) * 1e3:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-mb", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    layers = max(1, args.state_mb // 16)

    modes = {"none": None, "sync": False, "async": True}
    stalls: dict[str, list[float]] = {mode: [] for mode in modes}
    steps: dict[str, list[float]] = {mode: [] for mode in modes}
    fits: dict[str, list[float]] = {mode: [] for mode in modes}
    weights = {}
    for _ in range(args.rounds):
        for mode, async_save in modes.items():
            saved, plain, seconds, weights[mode] = train(async_save, layers, args.steps, args.every)
            fits[mode].append(seconds)
            typical = statistics.median(plain)
            stalls[mode] += [gap - typical for gap in saved]
            steps[mode] += plain
    alone = [write_seconds(layers) for _ in range(args.rounds)]

    print(f"state {layers * 16} MiB, {args.steps} steps, a checkpoint every {args.every}, {args.rounds} rounds")
    print(f"one synchronous write, alone:   {spread(alone)}")
    checkpoints = args.steps // args.every
    baseline = statistics.median(fits["none"])
    print(f"no checkpoints: whole fit {baseline:.2f} s, step {spread(steps['none'])}")
    for mode in ("sync", "async"):
        extra = (statistics.median(fits[mode]) - baseline) / checkpoints
        print(f"{mode:>5} stall in the checkpoint's step: {spread(stalls[mode])}   step without one: "
              f"{spread(steps[mode])}   whole fit: {statistics.median(fits[mode]):.2f} s, "
              f"{extra * 1e3:.0f} ms more per checkpoint than none")
    ratio = statistics.median(stalls["async"]) / statistics.median(stalls["sync"])
    print(f"async stall / sync stall: {ratio:.3f}")
    equal = torch.equal(weights["sync"], weights["async"]) and torch.equal(weights["none"], weights["async"])
    print(f"final weights bitwise equal in all modes: {equal}")


if __name__ == "__main__":
    main()
