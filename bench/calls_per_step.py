"""Python calls per training step on W1 or W2, the noise-free companion of the wall clock.

Run:   python bench/calls_per_step.py [--workload w1|w2] [--steps N] [--show 0]

Counts every Python function call (and, apart, every call into C) on the main thread with ``sys.setprofile``,
for the raw loop, tribus bare and tribus defaults: bench/instructions.py's contenders, which are
bench/overhead.py's (W1) and bench/suite.py's (W2, with 20 validation batches) with the same models and batches.
Each is counted over N and 3N steps (default N: 200 for W1, 100 for W2); the difference divided by 2N is the
per-step figure, so what a fit does once (setup, W2's validation, the end-of-epoch checkpoint) cancels out.
``--show K`` lists the K most frequent project functions per step. Work on other threads (a logger's writer
thread) is not counted.
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

from instructions import CONTENDERS, fit_function  # bench/ is on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    parser.add_argument("--workload", choices=["w1", "w2"], default="w1")
    parser.add_argument("--steps", type=int, default=None, help="N (default: 200 for W1, 100 for W2)")
    parser.add_argument("--show", type=int, default=0)
    args = parser.parse_args()
    steps = args.steps or (200 if args.workload == "w1" else 100)
    torch.set_num_threads(1)
    print(f"{args.workload.upper()}: {'contender':<18}{'Python calls/step':>19}{'C calls/step':>14}")
    for name in CONTENDERS:
        with tempfile.TemporaryDirectory() as root:
            fit = fit_function(args.workload, name, root, 3 * steps)
            count_calls(lambda: fit(20))  # warm-up: lazy imports and first-call caches
            short = count_calls(lambda: fit(steps))
            long = count_calls(lambda: fit(3 * steps))
        per_step = {key: (long[key] - short[key]) / (2 * steps) for key in long}
        python = sum(value for key, value in per_step.items() if not key.startswith("C:"))
        native = sum(value for key, value in per_step.items() if key.startswith("C:"))
        print(f"    {name:<18}{python:>19.1f}{native:>14.1f}")
        ours = sorted(((value, key) for key, value in per_step.items()
                       if key.split("/")[0] in ("engineering", "research", "auxiliary") and value > 0.05), reverse=True)
        for value, key in ours[:args.show]:
            print(f"        {value:6.2f}  {key}")


if __name__ == "__main__":
    main()
