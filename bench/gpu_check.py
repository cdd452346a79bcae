"""On one CUDA GPU: the Trainer's mixed precision against a hand-written AMP loop, numerics and speed.

Run:   python bench/gpu_check.py [--steps 300] [--rounds 3] [--width 2048] [--batch_size 512]

For each precision ("32-true" as the baseline, "16-mixed", "bf16-mixed") both contenders train the same
seeded MLP (4 Linear layers of ``--width``, ReLU, cross-entropy, SGD with momentum, gradient norm clipped to
1.0) on the same batches, generated on the GPU before timing so that no host-to-device copy is measured:

    raw      for x, y in batches: zero_grad(set_to_none=True); with torch.autocast("cuda", dtype):
             loss = F.cross_entropy(net(x), y); scaler.scale(loss).backward(); scaler.unscale_(opt);
             clip_grad_norm_(1.0); scaler.step(opt); scaler.update()     (no scaler for bf16 and 32-true)
    tribus   Trainer(accelerator="cuda", devices=1, precision=..., gradient_clip_val=1.0, max_epochs=1) with
             progress bar, logger, checkpointing, model summary and sanity check off

Reported per precision: the largest absolute difference between the two runs' final weights (after the
first round; 0 means bitwise equal), and the median wall time per step over ``--rounds`` rounds, with
the ratio tribus / raw. Each timed run ends with torch.cuda.synchronize(). Before the first round one
untimed raw run warms up CUDA (context, cuBLAS handles, kernels). Without a CUDA device it says so and
exits 0.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engineering import Trainer
from overhead import Batches  # bench/ is on sys.path when a script here runs
from research import LightningModule

AUTOCAST_DTYPES = {"32-true": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
CLASSES = 10
CLIP_NORM = 1.0
BARE = dict(enable_progress_bar=False, logger=False, enable_checkpointing=False,
            enable_model_summary=False, num_sanity_val_steps=0)


def make_batches(steps: int, batch_size: int, width: int) -> Batches:
    generator = torch.Generator(device="cuda").manual_seed(1)
    return Batches([
        (torch.randn(batch_size, width, device="cuda", generator=generator),
         torch.randint(0, CLASSES, (batch_size,), device="cuda", generator=generator))
        for _ in range(steps)
    ])


def make_network(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, CLASSES),
    ).cuda()


def make_optimizer(parameters: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=0.01, momentum=0.9)


class Classifier(LightningModule):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return F.cross_entropy(self.net(inputs), targets)

    def configure_optimizers(self):
        return make_optimizer(self.parameters())


def train_raw(net: nn.Module, batches: Batches, precision: str) -> float:
    """The hand-written AMP loop; returns its wall time in seconds."""
    dtype = AUTOCAST_DTYPES[precision]
    optimizer = make_optimizer(net.parameters())
    scaler = torch.amp.GradScaler("cuda") if dtype is torch.float16 else None
    torch.cuda.synchronize()
    started = time.perf_counter()
    for inputs, targets in batches:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(net(inputs), targets)
        if scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP_NORM)
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the gradients the optimizer will apply, not the scaled ones
            torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP_NORM)
            scaler.step(optimizer)
            scaler.update()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def train_tribus(net: nn.Module, batches: Batches, precision: str) -> float:
    """The same training through the Trainer; returns the wall time of ``fit`` in seconds."""
    trainer = Trainer(accelerator="cuda", devices=1, precision=precision, max_epochs=1,
                      gradient_clip_val=CLIP_NORM, **BARE)
    model = Classifier(net)
    torch.cuda.synchronize()
    started = time.perf_counter()
    trainer.fit(model, batches)
    torch.cuda.synchronize()
    return time.perf_counter() - started


def max_weight_difference(first: nn.Module, second: nn.Module) -> float:
    return max((a.float() - b.float()).abs().max().item()
               for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def check(precision: str, batches: Batches, width: int, rounds: int) -> dict[str, float]:
    """Both contenders, ``rounds`` times each, interleaved; the weights compared after the first round."""
    initial = make_network(width)
    raw_times, tribus_times, difference = [], [], float("nan")
    for round_index in range(rounds):
        raw_net, tribus_net = copy.deepcopy(initial), copy.deepcopy(initial)
        raw_times.append(train_raw(raw_net, batches, precision))
        tribus_times.append(train_tribus(tribus_net, batches, precision))
        if round_index == 0:
            difference = max_weight_difference(raw_net, tribus_net)
    steps = len(batches)
    raw_ms, tribus_ms = (1000 * statistics.median(times) / steps for times in (raw_times, tribus_times))
    return {"max_abs_weight_difference": difference, "raw_ms_per_step": raw_ms,
            "tribus_ms_per_step": tribus_ms, "ratio": tribus_ms / raw_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--batch_size", type=int, default=512)
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return

    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"{args.steps} steps of batch {args.batch_size}, width {args.width}, {args.rounds} rounds")
    batches = make_batches(args.steps, args.batch_size, args.width)
    train_raw(make_network(args.width), Batches(batches.items[:20]), "16-mixed")  # warm-up, not timed

    print(f"{'precision':<12}{'max |Δw|':>12}{'raw ms/step':>14}{'tribus ms/step':>16}{'tribus/raw':>12}")
    for precision in AUTOCAST_DTYPES:
        result = check(precision, batches, args.width, args.rounds)
        print(f"{precision:<12}{result['max_abs_weight_difference']:>12.3g}{result['raw_ms_per_step']:>14.3f}"
              f"{result['tribus_ms_per_step']:>16.3f}{result['ratio']:>12.3f}")


if __name__ == "__main__":
    main()
