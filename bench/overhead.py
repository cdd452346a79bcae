"""Trainer overhead per training step, against a hand-written PyTorch loop.

Run:   python bench/overhead.py [--steps 3000] [--rounds 5] [--warmup 200] [--json PATH]
       python bench/overhead.py --profile tribus-bare     # cProfile of one child, top functions

What it measures: the wall time of one epoch of ``torch.nn.Linear(32, 2)``, batch 16, cross-entropy,
SGD lr 0.1, ``torch.set_num_threads(1)``, no validation, over a list of (x, y) batches generated in
memory before timing (so data loading is not measured; every contender gets the same seeded list).
Contenders, each in a fresh subprocess, rounds interleaved:

    raw                 for x, y in batches: zero_grad(set_to_none=True); loss = F.cross_entropy(model(x), y);
                        loss.backward(); opt.step()
    tribus-bare         Trainer(max_epochs=1) with progress bar, logger, checkpointing, model summary and
                        sanity check off; training_step computes the same loss and calls self.log("train_loss", loss)
    tribus-defaults     Trainer(max_epochs=1, default_root_dir=tmp): all defaults on
    lightning-bare / lightning-defaults   the same with Lightning, only where ``import lightning`` works

Each child runs ``--warmup`` steps first (not timed), then times ``fit`` (Trainer construction excluded;
fixed costs inside fit, like the model summary and the end-of-epoch checkpoint, are spread over the steps).
While it trains, the child's stdout and stderr go to a file, so progress bars run in their non-terminal mode
whatever the terminal is. Reported: median µs/step (min–max over rounds), and the overhead, i.e. contender
minus raw within the same round, median (min–max) over rounds, plus the same overhead in process CPU time
(less sensitive to other load on the machine). ``TRIBUS_CALLBACKS`` is cleared for the children.
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


def prepare(name: str, root: str) -> tuple[Any, Any]:
    """Return (warm-up, timed) callables that each take the batch list; only the second one is timed."""
    import torch

    torch.manual_seed(0)
    if name == "raw":
        model = torch.nn.Linear(32, 2)
        return (lambda b: raw_fit(model, b)), (lambda b: raw_fit(model, b))
    framework, _, mode = name.partition("-")
    if framework == "tribus":
        from engineering import Trainer
        from research import LightningModule
    else:
        from lightning import LightningModule, Trainer
    module = module_class(LightningModule)()
    flags = dict(max_epochs=1, default_root_dir=root, **(BARE if mode == "bare" else {}))
    trainers = [Trainer(**flags), Trainer(**flags)]
    return tuple(lambda b, t=t: t.fit(module, train_dataloaders=Batches(b)) for t in trainers)  # type: ignore


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


def run_child(name: str, steps: int, warmup: int, profile: bool) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    batches = make_batches(steps)
    with tempfile.TemporaryDirectory() as root:
        console = os.path.join(root, "console.log")
        warm, timed = prepare(name, root)
        with console_to(console):
            warm(batches[:warmup])
            profiler = cProfile.Profile() if profile else None
            if profiler:
                profiler.enable()
            start, start_cpu = time.perf_counter(), time.process_time()
            timed(batches)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            if profiler:
                profiler.disable()
        if profiler:
            print_profile(profiler, steps)
        return {"name": name, "steps": steps, "seconds": seconds, "us_per_step": seconds / steps * 1e6,
                "cpu_us_per_step": cpu_seconds / steps * 1e6, "console_bytes": os.path.getsize(console)}


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
    command = [sys.executable, os.path.abspath(__file__), "--child", name,
               "--steps", str(args.steps), "--warmup", str(args.warmup)] + (["--profile", name] if profile else [])
    env = {key: value for key, value in os.environ.items() if key != "TRIBUS_CALLBACKS"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"child {name} failed (exit {done.returncode}):\n{done.stderr}")
    if profile:
        print(done.stderr, end="")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}  ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--json", metavar="PATH", help="also write the rounds and the summary here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="NAME", help="profile one run of NAME with cProfile and exit")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.steps, args.warmup, profile=bool(args.profile))))
        return
    if args.profile:
        result = spawn(args.profile, args, profile=True)
        print(f"{args.profile}: {result['us_per_step']:.1f} µs/step under cProfile")
        return

    import torch

    names = ["raw", "tribus-bare", "tribus-defaults"]
    lightning_version = None
    if importlib.util.find_spec("lightning") is not None:
        from importlib.metadata import version

        lightning_version = version("lightning")
        names += ["lightning-bare", "lightning-defaults"]
    load_before = os.getloadavg()[0]
    rounds = []
    for index in range(args.rounds):
        rounds.append({name: spawn(name, args) for name in names})
        print(f"round {index + 1}/{args.rounds}: "
              + ", ".join(f"{n} {r['us_per_step']:.1f}" for n, r in rounds[-1].items()), file=sys.stderr)

    print(f"\nTrainer overhead vs a hand-written loop — Linear(32, 2), batch 16, {args.steps} steps "
          f"(+{args.warmup} warm-up), {args.rounds} interleaved rounds, 1 thread")
    print(f"python {platform.python_version()}, torch {torch.__version__}, lightning {lightning_version or 'not installed'}, "
          f"{os.cpu_count()} CPUs, load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after")
    print("progress bars ran with stdout/stderr redirected to a file (non-terminal mode)\n")
    print(f"{'contender':<19} {'µs/step, median (min–max)':<27} {'overhead µs/step, median (min–max)':<35} "
          f"{'CPU-time overhead':<18} budget")
    summary = {}
    for name in names:
        per_step = [r[name]["us_per_step"] for r in rounds]
        overhead = [r[name]["us_per_step"] - r["raw"]["us_per_step"] for r in rounds]
        cpu_overhead = [r[name]["cpu_us_per_step"] - r["raw"]["cpu_us_per_step"] for r in rounds]
        budget = BUDGETS.get(name)
        verdict = "" if budget is None else f"≤ {budget:.0f}  " + ("ok" if statistics.median(overhead) <= budget else "OVER")
        print(f"{name:<19} {spread(per_step):<27} {'—' if name == 'raw' else spread(overhead):<35} "
              f"{'—' if name == 'raw' else f'{statistics.median(cpu_overhead):8.1f}':<18} {verdict}")
        summary[name] = {"us_per_step_median": statistics.median(per_step), "us_per_step_min": min(per_step),
                         "us_per_step_max": max(per_step), "overhead_median": statistics.median(overhead),
                         "overhead_min": min(overhead), "overhead_max": max(overhead),
                         "cpu_overhead_median": statistics.median(cpu_overhead), "budget": budget}
    if args.json:
        config = {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds, "torch": torch.__version__,
                  "lightning": lightning_version, "python": platform.python_version(),
                  "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}
        with open(args.json, "w") as out:
            json.dump({"config": config, "summary": summary, "rounds": rounds}, out, indent=2)


if __name__ == "__main__":
    main()
