"""Trainer overhead per training step, against a hand-written PyTorch loop.

Run:   python bench/overhead.py [--steps 3000] [--rounds 5] [--pairs 3] [--warmup 200] [--json PATH] [--tribus-only]
       python bench/overhead.py --profile tribus-bare     # cProfile of one child, top functions

What it measures: the wall time of one epoch of ``torch.nn.Linear(32, 2)``, batch 16, cross-entropy,
SGD lr 0.1, ``torch.set_num_threads(1)``, no validation, over a list of (x, y) batches generated in
memory before timing (so data loading is not measured; every contender gets the same seeded list).
Contenders, each in a fresh subprocess per round, rounds interleaved:

    raw                 for x, y in batches: zero_grad(set_to_none=True); loss = F.cross_entropy(model(x), y);
                        loss.backward(); opt.step()
    tribus-bare         Trainer(max_epochs=1) with progress bar, logger, checkpointing, model summary and
                        sanity check off; training_step computes the same loss and calls self.log("train_loss", loss)
    tribus-defaults     Trainer(max_epochs=1, default_root_dir=tmp): all defaults on
    lightning-bare / lightning-defaults   the same with Lightning, only where ``import lightning`` works

Each child runs ``--warmup`` steps of the raw loop and of its contender first (not timed), then ``--pairs``
times: the raw loop and a ``fit`` of the contender with a new Trainer (its construction not timed; fixed costs
inside fit, like the model summary and the end-of-epoch checkpoint, are spread over the steps), the raw loop
first in odd pairs and second in even ones, so that what the first or the second run of a pair gains (caches,
the allocator's state) cancels out. The overhead is the contender minus the raw run of its pair, in the same
process: between processes the same raw loop
runs up to 5% faster or slower (where its memory lands), which is more than the overheads measured here.
While it trains, the child's stdout and stderr go to a file, so progress bars run in their non-terminal mode
whatever the terminal is. Reported: median µs/step (min–max over all runs), and the overhead, median (min–max)
over all pairs, plus the same overhead in process CPU time (less sensitive to other load on the machine).
``TRIBUS_CALLBACKS`` is cleared for the children.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

BUDGETS = {"tribus-bare": 12.0, "tribus-defaults": 30.0}  # µs/step of overhead over the raw loop (issue 19)
BARE = dict(enable_progress_bar=False, logger=False, enable_checkpointing=False,
            enable_model_summary=False, num_sanity_val_steps=0)


# ---------------------------------------------------------------------------------------------
# child: one contender, one timed run, one JSON line on stdout
# ---------------------------------------------------------------------------------------------
class Batches:
    """The in-memory batches as one iterable: a bare list of tuples would read as a list of loaders."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def make_batches(count: int) -> list[Any]:
    import torch

    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 32, generator=generator), torch.randint(0, 2, (16,), generator=generator))
            for _ in range(count)]


def module_class(base: type) -> type:
    import torch
    import torch.nn.functional as F

    class Tiny(base):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(32, 2)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = F.cross_entropy(self.layer(x), y)  # self.layer, not self(...): the same module calls as raw
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny


def raw_fit(model: Any, batches: list[Any]) -> None:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()


def prepare(name: str, root: str, runs: int) -> list[Any]:
    """``runs`` callables that each take the batch list: the first for the warm-up, one per timed run after it."""
    import torch

    torch.manual_seed(0)
    if name == "raw":
        model = torch.nn.Linear(32, 2)
        return [lambda b: raw_fit(model, b)] * runs
    framework, _, mode = name.partition("-")
    if framework == "tribus":
        from engineering import Trainer
        from research import LightningModule
    else:
        from lightning import LightningModule, Trainer
    module = module_class(LightningModule)()
    flags = dict(max_epochs=1, default_root_dir=root, **(BARE if mode == "bare" else {}))
    trainers = [Trainer(**flags) for _ in range(runs)]
    return [lambda b, t=t: t.fit(module, train_dataloaders=Batches(b)) for t in trainers]


@contextlib.contextmanager
def console_to(path: str) -> Any:
    """Point file descriptors 1 and 2 at ``path``: bars and warnings see a file, not a terminal."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def run_child(name: str, steps: int, warmup: int, pairs: int, profile: bool) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    batches = make_batches(steps)
    result: dict[str, Any] = {"name": name, "steps": steps, "raw_us": [], "raw_cpu_us": [], "us": [], "cpu_us": []}
    with tempfile.TemporaryDirectory() as root:
        console = os.path.join(root, "console.log")
        raw_runs, runs = prepare("raw", root, pairs + 1), prepare(name, root, pairs + 1)
        profiler = cProfile.Profile() if profile else None
        with console_to(console):
            raw_runs[0](batches[:warmup])
            runs[0](batches[:warmup])
            for index in range(1, pairs + 1):
                pair = (("raw_", raw_runs[index]), ("", runs[index]))
                for prefix, run in (pair if index % 2 else pair[::-1]):  # who goes first alternates
                    profiling = profiler is not None and prefix == "" and index == pairs
                    if profiling:
                        profiler.enable()
                    start, start_cpu = time.perf_counter(), time.process_time()
                    run(batches)
                    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
                    if profiling:
                        profiler.disable()
                    result[prefix + "us"].append(seconds / steps * 1e6)
                    result[prefix + "cpu_us"].append(cpu_seconds / steps * 1e6)
        if profiler:
            print_profile(profiler, steps)
        result["console_bytes"] = os.path.getsize(console)
    return result


def print_profile(profiler: Any, steps: int) -> None:
    """Top 25 functions by own time, then own time per package, in µs per step (inflated by cProfile)."""
    import pstats

    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(25)
    packages: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        package = next((p for p in ("engineering", "research", "auxiliary", "blinker", "lightning", "torch")
                        if f"/{p}/" in filename), "other (builtins, C calls, stdlib)")
        packages[package] = packages.get(package, 0.0) + tottime
    print("own time by package, µs/step under cProfile:", file=sys.stderr)
    for package, seconds in sorted(packages.items(), key=lambda item: -item[1]):
        print(f"  {package:<36} {seconds / steps * 1e6:8.1f}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# parent: interleave the rounds, summarise
# ---------------------------------------------------------------------------------------------
def spawn(name: str, args: argparse.Namespace, profile: bool = False) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--child", name, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--pairs", str(args.pairs)] + (["--profile", name] if profile else [])
    env = {key: value for key, value in os.environ.items() if key != "TRIBUS_CALLBACKS"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"child {name} failed (exit {done.returncode}):\n{done.stderr}")
    if profile:
        print(done.stderr, end="")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(per_step: list[float], overhead: list[float] | None = None, cpu_overhead: list[float] | None = None,
             budget: float | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"us_per_step_median": statistics.median(per_step), "us_per_step_min": min(per_step),
                             "us_per_step_max": max(per_step)}
    if overhead is not None and cpu_overhead is not None:
        entry.update(overhead_median=statistics.median(overhead), overhead_min=min(overhead),
                     overhead_max=max(overhead), cpu_overhead_median=statistics.median(cpu_overhead), budget=budget)
    return entry


def pair_overheads(runs: list[dict[str, Any]], clock: str = "us") -> list[float]:
    """Each pair's overhead in ``runs`` (one contender's children): its µs/step minus its raw loop's, by the wall
    clock (``"us"``) or by process CPU time (``"cpu_us"``)."""
    return [us - raw for run in runs for us, raw in zip(run[clock], run[f"raw_{clock}"])]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}  ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=3, help="raw/contender pairs timed in each child")
    parser.add_argument("--json", metavar="PATH", help="also write the rounds and the summary here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="NAME", help="profile one run of NAME with cProfile and exit")
    parser.add_argument("--tribus-only", action="store_true", help="leave Lightning out even where it is installed")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.steps, args.warmup, args.pairs, profile=bool(args.profile))))
        return
    if args.profile:
        result = spawn(args.profile, args, profile=True)
        print(f"{args.profile}: {result['us'][-1]:.1f} µs/step under cProfile")
        return

    import torch

    names = ["tribus-bare", "tribus-defaults"]
    lightning_version = None
    if not args.tribus_only and importlib.util.find_spec("lightning") is not None:
        from importlib.metadata import version

        lightning_version = version("lightning")
        names += ["lightning-bare", "lightning-defaults"]
    load_before = os.getloadavg()[0]
    rounds = []
    for index in range(args.rounds):
        rounds.append({name: spawn(name, args) for name in names})
        print(f"round {index + 1}/{args.rounds}: " + ", ".join(
            f"{n} {statistics.median(r['us']):.1f} (raw {statistics.median(r['raw_us']):.1f})"
            for n, r in rounds[-1].items()), file=sys.stderr)

    print(f"\nTrainer overhead vs a hand-written loop — Linear(32, 2), batch 16, {args.steps} steps "
          f"(+{args.warmup} warm-up), {args.rounds} interleaved rounds of {args.pairs} raw/contender pairs, 1 thread")
    print(f"python {platform.python_version()}, torch {torch.__version__}, lightning {lightning_version or 'not installed'}, "
          f"{os.cpu_count()} CPUs, load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after")
    print("progress bars ran with stdout/stderr redirected to a file (non-terminal mode)\n")
    print(f"{'contender':<19} {'µs/step, median (min–max)':<27} {'overhead µs/step, median (min–max)':<35} "
          f"{'CPU-time overhead':<18} budget")
    raw_per_step = [value for r in rounds for each in r.values() for value in each["raw_us"]]
    summary = {"raw": _summary(raw_per_step)}
    print(f"{'raw':<19} {spread(raw_per_step):<27} {'—':<35} {'—':<18}")
    for name in names:
        runs = [r[name] for r in rounds]
        per_step = [us for run in runs for us in run["us"]]
        overhead, cpu_overhead = pair_overheads(runs), pair_overheads(runs, "cpu_us")
        budget = BUDGETS.get(name)
        summary[name] = _summary(per_step, overhead, cpu_overhead, budget)
        verdict = "" if budget is None else f"≤ {budget:.0f}  " + ("ok" if statistics.median(overhead) <= budget else "OVER")
        print(f"{name:<19} {spread(per_step):<27} {spread(overhead):<35} "
              f"{statistics.median(cpu_overhead):8.1f}{'':<10} {verdict}")
    if args.json:
        config = {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds, "pairs": args.pairs,
                  "torch": torch.__version__,
                  "lightning": lightning_version, "python": platform.python_version(),
                  "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}
        with open(args.json, "w") as out:
            json.dump({"config": config, "summary": summary, "rounds": rounds}, out, indent=2)


if __name__ == "__main__":
    main()
