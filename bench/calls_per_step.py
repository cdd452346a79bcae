"""Python calls per training step on W1, the noise-free companion of bench/overhead.py's wall clock.

Run:   python bench/calls_per_step.py [--steps 200] [--show 0]

Counts every Python function call (and, apart, every call into C) on the main thread with ``sys.setprofile``,
for the raw loop, tribus bare and tribus defaults (bench/overhead.py's contenders, same model and batches).
Each is counted over N and 3N steps; the difference divided by 2N is the per-step figure, so what a fit does
once (setup, the end-of-epoch checkpoint) cancels out. ``--show K`` lists the K most frequent project
functions per step. Work on other threads (a logger's writer thread) is not counted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import sys
import tempfile
from typing import Any

import torch

from overhead import BARE, Batches, make_batches, module_class, raw_fit  # bench/ is on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fit_function(name: str, root: str) -> Any:
    """A function of a batch list that runs the contender once over it."""
    if name == "raw":
        model = torch.nn.Linear(32, 2)
        return lambda batches: raw_fit(model, batches)
    from engineering import Trainer
    from research import LightningModule

    module = module_class(LightningModule)()
    flags = BARE if name == "tribus-bare" else {}
    return lambda batches: Trainer(max_epochs=1, default_root_dir=root, **flags).fit(
        module, train_dataloaders=Batches(batches))


def count_calls(run: Any) -> collections.Counter:
    """Calls made while ``run()`` runs, by ``file:function`` (C functions as ``C:name``)."""
    counts: collections.Counter = collections.Counter()

    def profile(frame: Any, event: str, argument: Any) -> None:
        if event == "call":
            code = frame.f_code
            counts[f"{os.path.relpath(code.co_filename, ROOT)}:{code.co_name}"] += 1
        elif event == "c_call":
            counts[f"C:{getattr(argument, '__qualname__', argument)}"] += 1

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        sys.setprofile(profile)
        try:
            run()
        finally:
            sys.setprofile(None)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--show", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches = make_batches(3 * args.steps)
    print(f"{'contender':<18}{'Python calls/step':>19}{'C calls/step':>14}")
    for name in ("raw", "tribus-bare", "tribus-defaults"):
        with tempfile.TemporaryDirectory() as root:
            fit = fit_function(name, root)
            count_calls(lambda: fit(batches[:20]))  # warm-up: lazy imports and first-call caches
            short = count_calls(lambda: fit(batches[:args.steps]))
            long = count_calls(lambda: fit(batches))
        per_step = {key: (long[key] - short[key]) / (2 * args.steps) for key in long}
        python = sum(value for key, value in per_step.items() if not key.startswith("C:"))
        native = sum(value for key, value in per_step.items() if key.startswith("C:"))
        print(f"{name:<18}{python:>19.1f}{native:>14.1f}")
        ours = sorted(((value, key) for key, value in per_step.items()
                       if key.split("/")[0] in ("engineering", "research", "auxiliary") and value > 0.05), reverse=True)
        for value, key in ours[:args.show]:
            print(f"    {value:6.2f}  {key}")


if __name__ == "__main__":
    main()
