"""Machine instructions per training step and per fit, counted by valgrind: the wall clock's noise-free companion.

Run:   python bench/instructions.py [--workload w1|w2] [--steps N]      (needs valgrind on the PATH)

On a shared machine the raw loop alone moves by 5 to 100 % between runs, more than the overheads measured. Counting
instructions (callgrind, every thread of the process) does not move: each contender runs a warm-up fit
uncounted, then one fit over N steps and one over 3N steps, counted; the difference divided by 2N is the cost of a
step, and what is left of the N-step fit is the fixed cost of a fit (setup, sanity check, summary, checkpoint,
teardown). Instructions are not time: Python code between kernels runs at fewer instructions per cycle than the
kernels do. W1 and W2 are bench/overhead.py's and bench/suite.py's workloads; W2's validation batches are 20.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
CONTENDERS = ("raw", "tribus-bare", "tribus-defaults")


def fit_function(workload: str, name: str, root: str, count: int) -> Any:
    """A function of a step count (at most ``count``) that runs the contender once over that many steps."""
    import torch

    from overhead import BARE, Batches  # bench/ is on sys.path

    flags = BARE if name == "tribus-bare" else {}
    if workload == "w1":
        from overhead import make_batches, module_class, raw_fit

        batches = make_batches(count)
        if name == "raw":
            model = torch.nn.Linear(32, 2)
            return lambda steps: raw_fit(model, batches[:steps])
        from engineering import Trainer
        from research import LightningModule

        module = module_class(LightningModule)
        return lambda steps: Trainer(max_epochs=1, default_root_dir=root, **flags).fit(
            module(), Batches(batches[:steps]))
    from suite import mnist_batches, mnist_model, raw_mnist_fit

    train, val = mnist_batches(count, seed=0), mnist_batches(20, seed=1)
    model = mnist_model("tribus")
    if name == "raw":
        return lambda steps: raw_mnist_fit(model, train[:steps], val)
    from engineering import Trainer

    return lambda steps: Trainer(max_epochs=1, default_root_dir=root, **flags).fit(
        model, train_dataloaders=Batches(train[:steps]), val_dataloaders=Batches(val))


def child(workload: str, name: str, steps: int) -> None:
    """Runs under callgrind with counting off: a warm-up fit, then ``steps`` steps counted."""
    import torch

    from overhead import console_to

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root, console_to(os.path.join(root, "console.log")):
        fit = fit_function(workload, name, root, max(steps, 50))
        fit(50)
        subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True, capture_output=True)
        fit(steps)
        subprocess.run(["callgrind_control", "--instr=off", str(os.getpid())], check=True, capture_output=True)


def counted(workload: str, name: str, steps: int) -> int:
    """Instructions of one fit of ``steps`` steps, all threads."""
    with tempfile.TemporaryDirectory() as scratch:
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={os.path.join(scratch, 'callgrind.out')}",
                   sys.executable, os.path.abspath(__file__), "--child", name, "--workload", workload,
                   "--steps", str(steps)]
        environment = {key: value for key, value in os.environ.items() if key != "TRIBUS_CALLBACKS"}
        done = subprocess.run(command, capture_output=True, text=True, env=environment)
    found = re.findall(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{name}, {steps} steps: valgrind exited with {done.returncode}\n{done.stderr[-3000:]}")
    return int(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["w1", "w2"], default="w1")
    parser.add_argument("--steps", type=int, default=None, help="N (default: 500 for W1, 100 for W2)")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps or (500 if args.workload == "w1" else 100)
    if args.child:
        child(args.workload, args.child, steps)
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed: install it (Debian: apt install valgrind) to count instructions.")
    print(f"{args.workload.upper()}: instructions (callgrind, all threads), fits of {steps} and {3 * steps} steps")
    print(f"{'contender':<18}{'per step':>12}{'over raw':>12}{'per fit':>14}{'over raw':>14}")
    raw_step = raw_fixed = None
    for name in CONTENDERS:
        short, long = counted(args.workload, name, steps), counted(args.workload, name, 3 * steps)
        per_step = (long - short) / (2 * steps)
        fixed = short - steps * per_step
        if raw_step is None:
            raw_step, raw_fixed = per_step, fixed
        print(f"{name:<18}{per_step:>12,.0f}{per_step - raw_step:>+12,.0f}{fixed:>14,.0f}{fixed - raw_fixed:>+14,.0f}")


if __name__ == "__main__":
    sys.path.insert(0, BENCH)
    main()
