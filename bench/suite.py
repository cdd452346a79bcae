"""The benchmark suite behind docs/performance.md: raw PyTorch, tribus and Lightning side by side.

Run:   python bench/suite.py [--rounds 5] [--out bench/results/suite.json]      (``make bench`` runs this)

Every measurement runs in a fresh subprocess, contenders interleaved within each round (tribus, Lightning,
tribus, …). W1 and W2 compare with the raw loop inside each child: it times the raw loop and its framework
alternately, and each ratio or overhead is taken between two runs made one after the other in that process
(between processes the same raw loop runs up to 5% faster or slower). The median (min–max) over all pairs
or rounds is reported. Lightning columns appear only where ``import lightning`` works.

    W1  Trainer overhead in µs/step, Linear(32, 2), batch 16, 3000 steps: bench/overhead.py, run as is.
    W2  the seed's MNIST MLP (784 → 128 → 256 → 10, defined in this file), batch 64, 1000 training steps then 100
        validation batches, self.log every step, Trainer defaults on (progress bar, logger, checkpointing,
        model summary, sanity check) against a hand-written loop with the same forward/backward/step and the
        same validation forward passes. Data: random tensors of MNIST shape, generated before timing. The
        whole fit is timed (fixed costs included), after a short warm-up fit that is not timed; each child times
        ``--w2-pairs`` raw/framework pairs.
    import   seconds that ``import research, engineering, auxiliary`` (or ``import lightning``) adds to an
        ``import torch`` already done, in a fresh process.
    first step   seconds from ``Trainer(...)`` to the end of the first optimizer step (a callback reads the
        clock at on_train_batch_end of batch 0), W2's model and defaults, imports done beforehand (torch's
        own lazy import at the first optimizer included).
    DDP  W2's model, batch 64 per process, 1 thread per process, on CPU over gloo: 2 processes against 1,
        tribus (Trainer(devices=N, accelerator="cpu"), defaults on) against a hand-written
        torch DistributedDataParallel loop (mp.spawn). Steady-state throughput: samples per second over
        the steps after the first ``--ddp-warmup`` (60: past the logger's first write at step 50, which
        creates its event file), all ranks together.
All children use ``torch.set_num_threads(1)``. ``TRIBUS_CALLBACKS`` is cleared for the children.
"""

from __future__ import annotations

import argparse
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from overhead import Batches, console_to  # noqa: E402  (the W1 harness's helpers)

W2_BUDGET = 1.04  # tribus / raw, defaults on (issue 19)
IMPORT_BUDGET = 0.15  # seconds beyond import torch
BATCH = 64


# ---------------------------------------------------------------------------------------------
# children
# ---------------------------------------------------------------------------------------------
def mnist_batches(count: int, seed: int) -> list[Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(BATCH, 1, 28, 28, generator=generator), torch.randint(0, 10, (BATCH,), generator=generator))
            for _ in range(count)]


def mnist_model(framework: str) -> Any:
    """The seed's MNIST MLP (784 → 128 → 256 → 10, Adam at 1e-3, ``self.log`` every step) on the framework's
    LightningModule; the raw loop uses the tribus one as a plain module. Defined here rather than imported from
    research/mnist.py, so that the example model can change without changing what W2 measures."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    if framework == "lightning":
        from lightning import LightningModule
    else:
        from research import LightningModule

    class SeedMLP(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer_1, self.layer_2, self.layer_3 = nn.Linear(784, 128), nn.Linear(128, 256), nn.Linear(256, 10)
            self.example_input_array = torch.zeros(1, 1, 28, 28)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.layer_1(x.view(x.size(0), -1)))
            return F.log_softmax(self.layer_3(F.relu(self.layer_2(x))), dim=1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.nll_loss(self(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            log_probabilities = self(x)
            self.log("val_loss", F.nll_loss(log_probabilities, y), prog_bar=True)
            self.log("val_acc", (log_probabilities.argmax(dim=1) == y).float().mean(), prog_bar=True)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return SeedMLP()


def framework_api(framework: str) -> tuple[type, type]:
    if framework == "tribus":
        from engineering import Callback, Trainer
    else:
        from lightning import Callback, Trainer
    return Trainer, Callback


def raw_mnist_fit(model: Any, train: list[Any], val: list[Any]) -> None:
    """What a careful user writes by hand: the same steps as the Trainer, and the same validation passes."""
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for x, y in train:
        loss = F.nll_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    losses, accuracies = [], []
    with torch.no_grad():
        for x, y in val:
            log_probabilities = model(x)
            losses.append(F.nll_loss(log_probabilities, y))
            accuracies.append((log_probabilities.argmax(dim=1) == y).float().mean())
    torch.stack(losses).mean().item(), torch.stack(accuracies).mean().item()
    model.train()


def w2_child(name: str, steps: int, val_batches: int, pairs: int) -> dict[str, Any]:
    """``pairs`` times the raw loop and the framework's fit, the raw loop first in every other pair, in this one
    process (see bench/overhead.py: between processes the same loop runs up to 5% faster or slower)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    train, val = mnist_batches(steps, seed=0), mnist_batches(val_batches, seed=1)
    framework = name.split("-")[1]
    Trainer, _ = framework_api(framework)
    result: dict[str, Any] = {"name": name, "raw_seconds": [], "raw_cpu_seconds": [], "seconds": [], "cpu_seconds": []}
    with tempfile.TemporaryDirectory() as root:
        raw_model, model = mnist_model("tribus"), mnist_model(framework)

        def raw(t: list[Any], v: list[Any]) -> None:
            raw_mnist_fit(raw_model, t, v)

        def fit(t: list[Any], v: list[Any]) -> None:
            Trainer(max_epochs=1, default_root_dir=root).fit(
                model, train_dataloaders=Batches(t), val_dataloaders=Batches(v))

        with console_to(os.path.join(root, "console.log")):
            raw(train[:50], val[:5])  # warm-up, not timed
            fit(train[:50], val[:5])
            for index in range(pairs):
                pair = (("raw_", raw), ("", fit))
                for prefix, run in (pair if index % 2 == 0 else pair[::-1]):  # who goes first alternates
                    start, start_cpu = time.perf_counter(), time.process_time()
                    run(train, val)
                    result[prefix + "seconds"].append(time.perf_counter() - start)
                    result[prefix + "cpu_seconds"].append(time.process_time() - start_cpu)
    return result


def first_step_child(name: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    framework = name.split("-")[1]
    Trainer, Callback = framework_api(framework)
    stamps: list[float] = []

    class FirstStep(Callback):  # type: ignore[misc,valid-type]
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == 0:
                stamps.append(time.perf_counter())

    model = mnist_model(framework)
    # torch imports torch._dynamo (about 1 s) when the first optimizer is built. Lightning's import does that
    # already; a throwaway optimizer does it here for both, so the clock measures the framework alone.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    train, val = mnist_batches(1, seed=0), mnist_batches(2, seed=1)
    with tempfile.TemporaryDirectory() as root, console_to(os.path.join(root, "console.log")):
        start = time.perf_counter()
        trainer = Trainer(max_epochs=1, default_root_dir=root, callbacks=[FirstStep()])
        trainer.fit(model, train_dataloaders=Batches(train), val_dataloaders=Batches(val))
    return {"name": name, "seconds": stamps[0] - start}


IMPORTS = {"tribus": "import research, engineering, auxiliary", "lightning": "import lightning"}


def import_child(name: str) -> dict[str, Any]:
    start = time.perf_counter()
    import torch  # noqa: F401

    torch_seconds = time.perf_counter() - start
    start = time.perf_counter()
    exec(IMPORTS[name.split("-")[1]])
    seconds = time.perf_counter() - start
    heavy = sorted(m for m in ("tensorboard", "torch_xla", "torchvision", "lightning") if m in sys.modules)
    return {"name": name, "seconds": seconds, "torch_seconds": torch_seconds, "heavy_modules_loaded": heavy}


def free_port() -> int:
    """A port nobody listens on now: a fixed one can still be held by the previous round's closing sockets."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def raw_ddp_rank(rank: int, world: int, steps: int, warmup: int, out: str, port: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    model = mnist_model("tribus")
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = mnist_batches(steps, seed=rank)
    for index, (x, y) in enumerate(batches):
        if index == warmup:
            start = time.perf_counter()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    if world > 1:
        dist.barrier()  # leave together: a rank tearing gloo down while the other still talks aborts it
        dist.destroy_process_group()
    if rank == 0:
        with open(out, "w") as sink:
            json.dump({"seconds": seconds}, sink)


def ddp_child(name: str, steps: int, warmup: int) -> dict[str, Any] | None:
    """``ddp-raw-2``, ``ddp-tribus-1``, …: steady-state samples/s of all ranks together."""
    _, framework, devices = name.split("-")
    world = int(devices)
    if framework == "raw":
        import torch.multiprocessing as mp

        with tempfile.TemporaryDirectory() as root:
            out, port = os.path.join(root, "rank0.json"), free_port()
            if world == 1:
                raw_ddp_rank(0, 1, steps, warmup, out, port)
            else:
                mp.spawn(raw_ddp_rank, args=(world, steps, warmup, out, port), nprocs=world)
            with open(out) as source:
                seconds = json.load(source)["seconds"]
    else:
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(0)
        Trainer, Callback = framework_api(framework)
        stamps: dict[str, float] = {}

        class Clock(Callback):  # type: ignore[misc,valid-type]
            def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
                if batch_idx == warmup - 1:
                    stamps["start"] = time.perf_counter()
                stamps["end"] = time.perf_counter()

        rank = int(os.environ.get("LOCAL_RANK", 0))  # tribus re-runs this command for local rank 1
        batches = mnist_batches(steps, seed=rank)
        model = mnist_model(framework)
        root = os.environ.get("BENCH_DDP_ROOT") or tempfile.mkdtemp()
        os.environ["BENCH_DDP_ROOT"] = root  # the re-run ranks share the first one's directory
        trainer = Trainer(max_epochs=1, devices=world, accelerator="cpu", default_root_dir=root,
                          callbacks=[Clock()], enable_progress_bar=rank == 0)
        with console_to(os.path.join(root, f"console-{rank}.log")):
            trainer.fit(model, train_dataloaders=Batches(batches))
        if not trainer.is_global_zero:
            return None
        seconds = stamps["end"] - stamps["start"]
    return {"name": name, "seconds": seconds, "samples_per_second": (steps - warmup) * BATCH * world / seconds}


# ---------------------------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------------------------
def spawn(args: list[str]) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), *args]
    env = {key: value for key, value in os.environ.items() if key not in ("TRIBUS_CALLBACKS", "BENCH_DDP_ROOT")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"child {args} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 6), "min": round(min(values), 6), "max": round(max(values), 6)}


def text(stats: dict[str, float], digits: int = 2, unit: str = "") -> str:
    return f"{stats['median']:.{digits}f}{unit} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def _as_list(value: float | list[float]) -> list[float]:
    return value if isinstance(value, list) else [value]


def rounds_of(names: list[str], rounds: int, extra: list[str], label: str) -> list[dict[str, Any]]:
    results = []
    for index in range(rounds):
        results.append({name: spawn(["--child", name, *extra]) for name in names})
        print(f"{label} round {index + 1}/{rounds}: "
              + ", ".join(f"{n} {statistics.median(_as_list(r['seconds'])):.3f}s" for n, r in results[-1].items()),
              file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--w2-steps", type=int, default=1000)
    parser.add_argument("--w2-val", type=int, default=100)
    parser.add_argument("--w2-pairs", type=int, default=3, help="raw/framework pairs timed in each W2 child")
    parser.add_argument("--import-runs", type=int, default=7)
    parser.add_argument("--ddp-steps", type=int, default=600)
    parser.add_argument("--ddp-warmup", type=int, default=60)
    parser.add_argument("--only", nargs="*", choices=["w1", "w2", "import", "first-step", "ddp"],
                        help="run only these parts (default: all)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "suite.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind = args.child.split("-")[0]
        result = (w2_child(args.child, args.w2_steps, args.w2_val, args.w2_pairs) if kind == "w2"
                  else first_step_child(args.child) if kind == "first"
                  else import_child(args.child) if kind == "import"
                  else ddp_child(args.child, args.ddp_steps, args.ddp_warmup))
        if result is not None:
            print(json.dumps(result))
        return

    import torch

    parts = set(args.only or ["w1", "w2", "import", "first-step", "ddp"])
    frameworks = ["tribus"]
    lightning_version = None
    if importlib.util.find_spec("lightning") is not None:
        from importlib.metadata import version

        lightning_version = version("lightning")
        frameworks.append("lightning")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    load_before = os.getloadavg()[0]
    report: dict[str, Any] = {}

    w1_json = os.path.join(os.path.dirname(os.path.abspath(args.out)), "w1.json")
    if "w1" in parts:
        subprocess.run([sys.executable, os.path.join(HERE, "overhead.py"), "--rounds", str(args.rounds),
                        "--json", w1_json], check=True)
    if os.path.exists(w1_json):  # with --only and no w1: the last W1 run's figures, as overhead.py wrote them
        with open(w1_json) as source:
            report["w1"] = json.load(source)["summary"]

    if "w2" in parts:
        names = [f"w2-{f}" for f in frameworks]
        results = rounds_of(names, args.rounds, ["--w2-steps", str(args.w2_steps), "--w2-val", str(args.w2_val),
                                                 "--w2-pairs", str(args.w2_pairs)], "W2")
        report["w2"] = {"w2-raw": {"seconds": spread([s for r in results for each in r.values()
                                                      for s in each["raw_seconds"]])}}
        for name in names:
            runs = [r[name] for r in results]
            report["w2"][name] = {
                "seconds": spread([s for run in runs for s in run["seconds"]]),
                "ratio_to_raw": spread([s / raw for run in runs for s, raw in zip(run["seconds"], run["raw_seconds"])]),
                "cpu_ratio_to_raw": spread([s / raw for run in runs
                                            for s, raw in zip(run["cpu_seconds"], run["raw_cpu_seconds"])]),
            }
        report["w2"]["budget"] = W2_BUDGET

    if "import" in parts:
        results = rounds_of([f"import-{f}" for f in frameworks], args.import_runs, [], "import")
        report["import"] = {name: {"seconds": spread([r[name]["seconds"] for r in results]),
                                   "torch_seconds": spread([r[name]["torch_seconds"] for r in results]),
                                   "heavy_modules_loaded": results[-1][name]["heavy_modules_loaded"]}
                            for name in results[0]}
        report["import"]["budget"] = IMPORT_BUDGET

    if "first-step" in parts:
        results = rounds_of([f"first-{f}" for f in frameworks], args.rounds, [], "first step")
        report["first_step"] = {name: {"seconds": spread([r[name]["seconds"] for r in results])}
                                for name in results[0]}

    if "ddp" in parts:
        names = ["ddp-raw-1", "ddp-raw-2", "ddp-tribus-1", "ddp-tribus-2"]
        extra = ["--ddp-steps", str(args.ddp_steps), "--ddp-warmup", str(args.ddp_warmup)]
        results = rounds_of(names, max(3, args.rounds // 2 + 1), extra, "DDP")  # 3 rounds for the default 5
        report["ddp"] = {name: {"samples_per_second": spread([r[name]["samples_per_second"] for r in results])}
                         for name in names}
        for devices in ("1", "2"):
            report["ddp"][f"tribus_over_raw_{devices}"] = spread(
                [r[f"ddp-raw-{devices}"]["samples_per_second"] / r[f"ddp-tribus-{devices}"]["samples_per_second"]
                 for r in results])
        for framework in ("raw", "tribus"):
            report["ddp"][f"{framework}_speedup_2_over_1"] = spread(
                [r[f"ddp-{framework}-2"]["samples_per_second"] / r[f"ddp-{framework}-1"]["samples_per_second"]
                 for r in results])

    report["config"] = {"rounds": args.rounds, "w2_steps": args.w2_steps, "w2_val": args.w2_val,
                        "ddp_steps": args.ddp_steps, "ddp_warmup": args.ddp_warmup, "import_runs": args.import_runs,
                        "python": platform.python_version(), "torch": torch.__version__,
                        "lightning": lightning_version, "cpus": os.cpu_count(), "machine": platform.machine(),
                        "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}
    with open(args.out, "w") as sink:
        json.dump(report, sink, indent=2)
    print_summary(report)
    print(f"\nwritten to {args.out}")


def print_summary(report: dict[str, Any]) -> None:
    print("\nsummary (median (min–max) over rounds)")
    if "w2" in report:
        for name, value in report["w2"].items():
            if isinstance(value, dict) and "ratio_to_raw" in value:
                print(f"  W2 {name:<14} {text(value['seconds'], 3, ' s')}   ×raw {text(value['ratio_to_raw'])}"
                      f"   CPU ×raw {value['cpu_ratio_to_raw']['median']:.2f}")
            elif isinstance(value, dict):
                print(f"  W2 {name:<14} {text(value['seconds'], 3, ' s')}")
    for key, label in (("import", "import"), ("first_step", "first step")):
        for name, value in report.get(key, {}).items():
            if isinstance(value, dict):
                print(f"  {label} {name:<18} {text(value['seconds'], 3, ' s')}")
    for name, value in report.get("ddp", {}).items():
        unit = "samples/s" if "samples_per_second" in value else ""
        stats = value.get("samples_per_second", value)
        print(f"  DDP {name:<24} {text(stats, 0 if unit else 3)} {unit}")


if __name__ == "__main__":
    main()
