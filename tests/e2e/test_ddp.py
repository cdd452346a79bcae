"""DDP with real processes on CPU (gloo): the three launchers, SLURM, preemption, and the hang watchdog.

Every run is ddp_script.py in fresh interpreters: tribus re-launching the script itself, torchrun, ddp_spawn,
or two processes this test starts with SLURM's variables. A run trains a tiny regression for 16 global
steps of 8 samples; every rank writes its weights, callback_metrics, ranks and the sample indices it trained
on, which the tests compare across ranks and with one process training on the same global batches.

Nothing is mocked: processes, sockets, signals and the fake ``scontrol`` are real. Ports come from the OS.
Every process a test starts, and every process those start, is killed when the test ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import torch

from engineering import Trainer
from engineering.checkpointing.checkpoint import load_checkpoint
from engineering.strategies.environment import ClusterEnvironment, detect, first_host
from tests.helpers import TinyModule, tiny_loader

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("ddp_script.py")
RUN_TIMEOUT = 60.0  # a healthy two-process run takes ~5 s; past this a run is declared hung
STEPS = 16  # 64 samples / global batch 8 x 2 epochs
LAUNCHERS = ("self_launch", "torchrun", "ddp_spawn")

_LAUNCHER_VARIABLES = {"LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                       "ROLE_RANK", "ROLE_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"}


def _is_launcher_variable(name: str) -> bool:
    return name in _LAUNCHER_VARIABLES or name.startswith(("SLURM_", "TORCHELASTIC_"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any launcher's variables (the test may itself run under one)."""
    environment = {name: value for name, value in os.environ.items() if not _is_launcher_variable(name)}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    environment.update(extra)
    return environment


def slurm_environment(rank: int, port: int, job_id: str = "4242", **extra: str) -> dict[str, str]:
    """What srun gives task ``rank`` of a two-task job on one node, but meeting on localhost."""
    return clean_environment(
        SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2", SLURM_NNODES="1", SLURM_PROCID=str(rank),
        SLURM_LOCALID=str(rank), SLURM_NODEID="0", SLURM_NODELIST="node[07-08]", SLURM_JOB_ID=job_id,
        SLURM_JOB_NAME="train", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **extra,
    )


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
class Process:
    """One command in a fresh interpreter; its output goes to files (two ranks on pipes could block)."""

    def __init__(self, command: list[str], environment: dict[str, str], logs: Path, name: str) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.stdout_path, self.stderr_path = logs / f"{name}.stdout", logs / f"{name}.stderr"
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.popen = subprocess.Popen(command, env=environment, cwd=logs, stdout=stdout, stderr=stderr)
        self.started = time.monotonic()
        self.ended: float | None = None
        self._family: dict[int, psutil.Process] = {self.popen.pid: psutil.Process(self.popen.pid)}

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _note_descendants(self) -> None:
        # Remember every process it starts: torchrun puts its workers in their own sessions, and a child
        # outliving its parent is re-parented, so neither a process group nor the final tree finds them all.
        try:
            for child in self._family[self.popen.pid].children(recursive=True):
                self._family.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def wait(self, timeout: float = RUN_TIMEOUT) -> int | None:
        """The exit status, or None if it was still running after ``timeout`` seconds."""
        deadline = self.started + timeout
        while self.popen.poll() is None and time.monotonic() < deadline:
            self._note_descendants()
            time.sleep(0.05)
        if self.popen.poll() is not None and self.ended is None:
            self.ended = time.monotonic()
        return self.popen.returncode

    def kill_all(self) -> None:
        """SIGKILL it and everything it started (each checked to be the same process, not a reused pid)."""
        self._note_descendants()
        for process in self._family.values():
            try:
                if process.is_running():
                    process.kill()
            except psutil.Error:
                pass
        self.popen.wait()

    def survivors(self) -> list[psutil.Process]:
        alive = []
        for process in self._family.values():
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.Error:
                pass
        return alive

    def report(self) -> str:
        return (f"--- {self.name} exit status {self.popen.returncode}\n--- stdout (tail):\n{self.stdout[-3000:]}"
                f"\n--- stderr (tail):\n{self.stderr[-6000:]}")


def run_to_end(processes: list[Process], timeout: float = RUN_TIMEOUT) -> None:
    """Wait for all; if any is still running after ``timeout`` kill everything and fail with their output."""
    try:
        statuses = [process.wait(timeout) for process in processes]
        if any(status is None for status in statuses):
            raise AssertionError(f"still running after {timeout:.0f} s (killed):\n" +
                                 "\n".join(process.report() for process in processes))
        failed = [process for process in processes if process.popen.returncode != 0]
        if failed:
            raise AssertionError("a run failed:\n" + "\n".join(process.report() for process in failed))
    finally:
        for process in processes:
            process.kill_all()


def script_command(out: Path, *options: str) -> list[str]:
    return [sys.executable, str(SCRIPT), str(out), *options]


@dataclass
class Run:
    """What a finished run left in its output directory."""

    out: Path
    processes: list[Process]

    def metrics(self, name: str | int) -> dict:
        return json.loads((self.out / f"metrics.{_rank_name(name)}.json").read_text())

    def weights(self, name: str | int) -> dict[str, torch.Tensor]:
        return torch.load(self.out / f"weights.{_rank_name(name)}.pt", weights_only=True)

    def ranks(self) -> list[int]:
        return sorted(int(path.name.split(".")[1][len("rank"):]) for path in self.out.glob("metrics.rank*.json"))


def _rank_name(name: str | int) -> str:
    return f"rank{name}" if isinstance(name, int) else name


def launch(launcher: str, out: Path, *options: str) -> Run:
    """Train with two ranks started the way ``launcher`` says; fails with the processes' output if it fails."""
    out.mkdir(parents=True)
    logs = out.parent / f"{out.name}-logs"
    if launcher == "self_launch":  # plain `python script.py`: tribus starts rank 1 itself
        processes = [Process(script_command(out, *options), clean_environment(), logs, "rank0")]
    elif launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                   f"--master_port={free_port()}", str(SCRIPT), str(out), *options]
        processes = [Process(command, clean_environment(), logs, "torchrun")]
    elif launcher == "ddp_spawn":
        processes = [Process(script_command(out, "--strategy", "ddp_spawn", *options), clean_environment(), logs,
                             "parent")]
    elif launcher == "slurm":  # the test is srun: it starts both tasks
        port = free_port()
        processes = [Process(script_command(out, *options), slurm_environment(rank, port), logs, f"rank{rank}")
                     for rank in (0, 1)]
    else:
        raise ValueError(launcher)
    run_to_end(processes)
    return Run(out, processes)


# ---------------------------------------------------------------------------------------------
# The same training, launched each way
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Run:
    """The reference: one process, batches of 8 (the global batch of the two-rank runs)."""
    out = tmp_path_factory.mktemp("one_process") / "out"
    out.mkdir()
    process = Process(script_command(out, "--devices", "1", "--strategy", "auto"), clean_environment(),
                      out.parent / "logs", "single")
    run_to_end([process])
    return Run(out, [process])


@pytest.fixture(scope="module")
def launches(tmp_path_factory) -> dict[str, Run | BaseException]:
    """One run per launcher for the whole module, started when a test first asks for it."""
    return {}


def _launched_once(launches: dict[str, Run | BaseException], launcher: str, tmp_path_factory) -> Run:
    if launcher not in launches:
        try:
            launches[launcher] = launch(launcher, tmp_path_factory.mktemp(launcher) / "out")
        except AssertionError as failure:  # a failed run fails every test that reads it, without rerunning it
            launches[launcher] = failure
    result = launches[launcher]
    if isinstance(result, BaseException):
        raise AssertionError(f"the {launcher} run failed") from result
    return result


@pytest.fixture(params=LAUNCHERS)
def launched(request, launches, tmp_path_factory) -> Run:
    return _launched_once(launches, request.param, tmp_path_factory)


@pytest.fixture
def spawned(launches, tmp_path_factory) -> Run:
    return _launched_once(launches, "ddp_spawn", tmp_path_factory)


def assert_trained_like_one_process(run: Run, one_process: Run) -> None:
    assert run.ranks() == [0, 1], f"expected results from ranks 0 and 1, found {run.ranks()}"
    rank0, rank1, single = run.weights(0), run.weights(1), one_process.weights(0)
    for name in single:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between rank 0 and rank 1"
        assert torch.allclose(rank0[name], single[name], atol=1e-6, rtol=0), (
            f"{name}: two ranks {rank0[name].tolist()} vs one process {single[name].tolist()}"
        )
    assert not torch.equal(single["layer.weight"], torch.zeros_like(single["layer.weight"]))  # it trained


def test_both_ranks_end_with_identical_weights_equal_to_one_process(launched, one_process):
    assert_trained_like_one_process(launched, one_process)


def test_each_global_step_trains_on_the_samples_one_process_trains_on(launched, one_process):
    """The claim that makes the weights comparable: the ranks split each global batch, disjointly."""
    single = {step: indices for step, indices in one_process.metrics(0)["batches"]}
    per_rank = [{step: indices for step, indices in launched.metrics(rank)["batches"]} for rank in (0, 1)]
    assert len(single) == STEPS and all(len(indices) == 8 for indices in single.values())
    for rank in (0, 1):
        assert sorted(per_rank[rank]) == sorted(single), f"rank {rank} stepped at other global steps"
    for step, indices in single.items():
        first, second = per_rank[0][step], per_rank[1][step]
        assert len(first) == len(second) == 4
        assert not set(first) & set(second), f"step {step}: both ranks trained on {set(first) & set(second)}"
        assert sorted(first + second) == sorted(indices), f"step {step}: ranks {first}+{second}, one process {indices}"


def test_sync_dist_logs_the_mean_over_ranks(launched, one_process):
    single = one_process.metrics(0)["metrics"]
    for rank in (0, 1):
        metrics = launched.metrics(rank)["metrics"]
        rank_values = {key: value for key, value in metrics.items() if key.startswith("rank_value")}
        assert rank_values and set(rank_values.values()) == {0.5}, f"rank {rank}: {rank_values} (mean of 0 and 1)"
        # Each rank's loss is over its half of the global batch; their mean is the loss over all of it.
        assert metrics["train_loss"] == pytest.approx(single["train_loss"], abs=1e-6), f"rank {rank}"
    assert launched.metrics(0)["metrics"] == launched.metrics(1)["metrics"]


def test_ranks_know_where_they_sit(launched):
    for rank in (0, 1):
        metrics = launched.metrics(rank)
        assert (metrics["world_size"], metrics["global_rank"], metrics["local_rank"], metrics["node_rank"]) == (
            2, rank, rank, 0), metrics
        assert metrics["global_step"] == STEPS
        # As Lightning's strategies do: rank_zero_only.rank is the global rank, so @rank_zero_only runs on rank 0 only.
        assert (metrics["rank_zero_only_rank"], metrics["rank_zero_only_ran"]) == (rank, rank == 0), metrics
    assert launched.metrics(0)["pid"] != launched.metrics(1)["pid"], "both ranks ran in one process"


def test_ranks_share_the_cores_between_them(launched):
    expected = int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, (os.cpu_count() or 1) // 2)
    assert [launched.metrics(rank)["threads"] for rank in (0, 1)] == [expected, expected]


def test_only_rank_zero_writes_logs_and_checkpoints(launched):
    out = launched.out
    versions = sorted(path.name for path in (out / "lightning_logs").iterdir())
    assert versions == ["version_0"], f"expected one log directory, found {versions}"
    checkpoints = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.ckpt"))
    assert checkpoints == [f"lightning_logs/version_0/checkpoints/epoch=1-step={STEPS}.ckpt"], checkpoints
    event_files = list(out.rglob("events.out.tfevents.*"))
    assert len(event_files) == 1, event_files
    writer_pid = int(event_files[0].name.split(".")[-2])  # events.out.tfevents.<time>.<host>.<pid>.<n>
    assert writer_pid == launched.metrics(0)["pid"], "the TensorBoard log was not written by rank 0"
    expected = {"lightning_logs", "metrics.rank0.json", "metrics.rank1.json", "weights.rank0.pt", "weights.rank1.pt",
                "metrics.parent.json", "weights.parent.pt"}
    stray = {path.name for path in out.iterdir() if not path.name.startswith("prepare_data.")} - expected
    assert not stray, f"unexpected files in default_root_dir: {sorted(stray)}"


def test_prepare_data_runs_once(launched):
    markers = sorted(path.name for path in launched.out.glob("prepare_data.*"))
    assert len(markers) == 1, f"prepare_data ran {len(markers)} times: {markers}"
    pid = int(markers[0].split(".")[1])
    allowed = {launched.metrics(0)["pid"]}
    if (launched.out / "metrics.parent.json").exists():  # ddp_spawn may prepare in the process that called fit
        allowed.add(launched.metrics("parent")["pid"])
    assert pid in allowed, f"prepare_data ran in pid {pid}, not rank 0 ({allowed})"


def test_ddp_spawn_leaves_the_trained_weights_in_the_model_fit_was_called_with(spawned):
    parent, rank0 = spawned.weights("parent"), spawned.weights(0)
    assert spawned.metrics("parent")["pid"] == spawned.processes[0].pid
    assert spawned.metrics("parent")["pid"] not in (spawned.metrics(0)["pid"], spawned.metrics(1)["pid"])
    for name in rank0:
        assert torch.equal(parent[name], rank0[name]), f"{name}: the caller's model did not get rank 0's weights"


def test_ddp_spawn_leaves_rank_zeros_callback_metrics_in_the_calling_trainer(spawned):
    # Lightning's ddp_spawn sends rank 0's callback_metrics back, so code after fit reads them as usual.
    assert spawned.metrics("parent")["metrics"] == spawned.metrics(0)["metrics"]


def test_the_store_of_a_job_tribus_starts_listens_on_a_port_bound_as_it_is_chosen(no_launcher, tmp_path):
    # The port found free when the Trainer was built can be taken by the time the ranks start, by any process's
    # connection: the store then binds a port the system picks, and the ranks are told that one.
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=2, default_root_dir=tmp_path,
                      logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    probed = trainer.strategy.environment.main_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", probed))
        squatter.listen()
        trainer.fit(TinyModule(), tiny_loader(samples=16, batch_size=4))
    assert trainer.global_step == 2
    assert trainer.strategy.environment.main_port != probed


def test_the_store_listens_on_master_port_when_it_is_set(no_launcher, monkeypatch):
    port = free_port()
    monkeypatch.setenv("MASTER_PORT", str(port))
    strategy = Trainer(accelerator="cpu", devices=2, strategy="ddp").strategy
    store = strategy.host_store()
    assert store.port == strategy.environment.main_port == port


# ---------------------------------------------------------------------------------------------
# SLURM
# ---------------------------------------------------------------------------------------------
def test_slurm_tasks_started_by_srun_find_their_ranks_and_train_together(tmp_path, one_process):
    run = launch("slurm", tmp_path / "out")
    for rank in (0, 1):
        metrics = run.metrics(rank)
        assert (metrics["world_size"], metrics["global_rank"], metrics["local_rank"], metrics["node_rank"]) == (
            2, rank, rank, 0), metrics
        # SLURM started every process: tribus must not have launched more of its own.
        assert metrics["pid"] == run.processes[rank].pid
        assert metrics["global_step"] == STEPS
    assert_trained_like_one_process(run, one_process)
    assert len(list(run.out.glob("prepare_data.*"))) == 1


@pytest.fixture
def no_launcher(monkeypatch) -> None:
    for name in list(os.environ):
        if _is_launcher_variable(name):
            monkeypatch.delenv(name)


def set_environment(monkeypatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


SLURM_TASK = dict(SLURM_NTASKS="4", SLURM_PROCID="3", SLURM_LOCALID="1", SLURM_NODEID="1",
                  SLURM_NODELIST="gpu[03-05,09],cpu1", SLURM_JOB_ID="12345", SLURM_JOB_NAME="train")


def test_detect_without_a_launcher_is_rank_zero_of_a_job_tribus_will_start(no_launcher):
    environment = detect(devices_per_node=2, num_nodes=1)
    assert (environment.world_size, environment.global_rank, environment.local_rank) == (2, 0, 0)
    assert not environment.launched_externally
    assert 0 < environment.main_port < 65536


def test_detect_reads_torchrun_variables(no_launcher, monkeypatch):
    set_environment(monkeypatch, LOCAL_RANK="1", RANK="3", WORLD_SIZE="4", GROUP_RANK="1",
                    MASTER_ADDR="10.1.2.3", MASTER_PORT="29555", TORCHELASTIC_RUN_ID="run")
    assert detect(devices_per_node=2, num_nodes=2) == ClusterEnvironment(
        world_size=4, global_rank=3, local_rank=1, node_rank=1, main_address="10.1.2.3", main_port=29555,
        launched_externally=True, name="torchrun",
    )


def test_torchrun_inside_a_slurm_allocation_is_torchrun(no_launcher, monkeypatch):
    # `srun torchrun ...`: one SLURM task per node, torchrun starts the ranks; SLURM's counts are not the ranks.
    set_environment(monkeypatch, **{**SLURM_TASK, "SLURM_NTASKS": "2", "SLURM_PROCID": "1"},
                    LOCAL_RANK="0", RANK="2", WORLD_SIZE="4", GROUP_RANK="1", MASTER_ADDR="gpu03",
                    MASTER_PORT="29500", TORCHELASTIC_RUN_ID="run")
    environment = detect(devices_per_node=2, num_nodes=2)
    assert (environment.name, environment.world_size, environment.global_rank) == ("torchrun", 4, 2)


def test_detect_reads_slurm_variables(no_launcher, monkeypatch):
    set_environment(monkeypatch, **SLURM_TASK)
    environment = detect(devices_per_node=2, num_nodes=2)
    assert (environment.name, environment.world_size, environment.global_rank, environment.local_rank,
            environment.node_rank) == ("slurm", 4, 3, 1, 1)
    assert environment.launched_externally
    assert environment.main_address == "gpu03"  # the first host of the job


def test_every_slurm_task_derives_the_same_port_from_the_job_id(no_launcher, monkeypatch):
    set_environment(monkeypatch, **SLURM_TASK)
    ports = set()
    for rank in range(4):
        monkeypatch.setenv("SLURM_PROCID", str(rank))
        monkeypatch.setenv("SLURM_LOCALID", str(rank % 2))
        ports.add(detect(devices_per_node=2, num_nodes=2).main_port)
    assert len(ports) == 1 and 1024 < ports.pop() < 65536
    first = detect(2, 2).main_port
    monkeypatch.setenv("SLURM_JOB_ID", "12346")
    assert detect(2, 2).main_port != first, "two jobs on the same nodes would collide on one port"


def test_master_addr_and_port_override_what_slurm_implies(no_launcher, monkeypatch):
    set_environment(monkeypatch, **SLURM_TASK, MASTER_ADDR="10.9.8.7", MASTER_PORT="31000")
    environment = detect(2, 2)
    assert (environment.main_address, environment.main_port) == ("10.9.8.7", 31000)


@pytest.mark.parametrize(("nodelist", "first"), [
    ("gpu[03-05,09],cpu1", "gpu03"),
    ("node[07-08]", "node07"),
    ("node07", "node07"),
    ("node7,node8", "node7"),
    ("cpu1,gpu[03-05]", "cpu1"),
    ("node[010-012]", "node010"),  # zero padding is part of the name
    ("node[5]", "node5"),
    ("a100-n[2,4-6]", "a100-n2"),
    ("node[1-2]-ib", "node1-ib"),  # a suffix after the range (hostlist allows it)
])
def test_first_host_of_a_slurm_node_list(nodelist, first):
    assert first_host(nodelist) == first


def test_slurm_tasks_not_matching_devices_times_nodes_is_a_clear_error(no_launcher, monkeypatch):
    set_environment(monkeypatch, **{**SLURM_TASK, "SLURM_NTASKS": "3", "SLURM_PROCID": "0"})
    with pytest.raises(Exception, match=r"3 tasks.*devices=2.*num_nodes=1") as raised:
        detect(devices_per_node=2, num_nodes=1)
    assert "ntasks-per-node" in str(raised.value)  # it says how to fix the job script
    with pytest.raises(Exception, match=r"3 tasks.*devices=2.*num_nodes=1"):  # and a user sees it from the Trainer
        Trainer(accelerator="cpu", devices=2, num_nodes=1)


@pytest.mark.parametrize("job_name", ["bash", "interactive"])
def test_interactive_slurm_jobs_are_not_slurm_launches(no_launcher, monkeypatch, job_name):
    # `srun --pty bash`, then `python train.py`: SLURM's variables describe the shell, tribus starts the ranks.
    set_environment(monkeypatch, **{**SLURM_TASK, "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                                    "SLURM_NODEID": "0", "SLURM_JOB_NAME": job_name})
    environment = detect(devices_per_node=2, num_nodes=1)  # 1 task vs 2 devices: no mismatch error here
    assert environment.name != "slurm" and not environment.launched_externally
    assert (environment.world_size, environment.global_rank) == (2, 0)


# -- preemption: SIGUSR1 before the time limit, requeue, and the next job resumes ------------------------------
def fake_scontrol(directory: Path) -> Path:
    """An ``scontrol`` that appends its arguments to ``calls``; returns the calls file."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    calls = directory / "scontrol.calls"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    scontrol.chmod(0o755)
    return calls


def wait_for_line(process: Process, line: str, timeout: float = RUN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in process.stdout.splitlines():
            return
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} ended before printing {line!r}:\n{process.report()}")
        time.sleep(0.01)
    raise AssertionError(f"{process.name} did not print {line!r} within {timeout:.0f} s:\n{process.report()}")


PREEMPTED_EPOCHS = 4  # 32 global steps; the ranks agree on a signal every 8 steps and at each epoch's end


@pytest.fixture(scope="module")
def preempted(tmp_path_factory) -> tuple[Run, Path]:
    """A two-task SLURM job whose ranks both get SIGUSR1 (as `#SBATCH --signal=USR1@90` does) early on."""
    root = tmp_path_factory.mktemp("preempted")
    calls = fake_scontrol(root)
    out = root / "out"
    out.mkdir()
    port = free_port()
    path = f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}"
    processes = [
        Process(script_command(out, "--max-epochs", str(PREEMPTED_EPOCHS), "--step-seconds", "0.2"),
                slurm_environment(rank, port, PATH=path), root / "logs", f"rank{rank}")
        for rank in (0, 1)
    ]
    try:
        for rank, process in enumerate(processes):
            wait_for_line(process, f"rank {rank} step 1")
        for process in processes:
            os.kill(process.pid, signal.SIGUSR1)
    except BaseException:
        for process in processes:
            process.kill_all()
        raise
    run_to_end(processes)
    return Run(out, processes), calls


def test_slurm_sigusr1_saves_once_requeues_once_and_both_ranks_exit_cleanly(preempted):
    run, calls = preempted
    assert calls.exists(), "scontrol was never called:\n" + run.processes[0].report()
    assert calls.read_text().splitlines() == ["requeue 4242"], "rank 0, and only rank 0, requeues the job"
    saved = sorted(path.name for path in run.out.rglob("hpc_ckpt_*.ckpt"))
    assert saved == ["hpc_ckpt_1.ckpt"], saved
    step = load_checkpoint(run.out / "hpc_ckpt_1.ckpt")["global_step"]
    assert 0 < step < PREEMPTED_EPOCHS * 8 and step % 8 == 0, f"stopped at global_step {step}"
    assert "SIGUSR1 received" in run.processes[0].stdout
    assert "Requeued SLURM job 4242" in run.processes[0].stdout
    assert not list(run.out.glob("weights.rank*.pt")), "fit ran to its end despite the signal"


@pytest.mark.slow
def test_the_requeued_job_resumes_from_the_preemption_checkpoint_and_ends_like_one_process(preempted, tmp_path):
    run, _ = preempted
    stopped = load_checkpoint(run.out / "hpc_ckpt_1.ckpt")["global_step"]
    port = free_port()
    processes = [Process(script_command(run.out, "--max-epochs", str(PREEMPTED_EPOCHS)),
                         slurm_environment(rank, port), tmp_path / "logs", f"resumed{rank}") for rank in (0, 1)]
    run_to_end(processes)
    reference_out = tmp_path / "reference"
    reference_out.mkdir()
    reference = [Process(script_command(reference_out, "--devices", "1", "--strategy", "auto", "--max-epochs",
                                        str(PREEMPTED_EPOCHS)), clean_environment(), tmp_path / "logs", "reference")]
    run_to_end(reference)
    for rank in (0, 1):
        metrics = run.metrics(rank)
        assert Path(metrics["ckpt_path"]).name == "hpc_ckpt_1.ckpt", "the next job did not find the checkpoint"
        assert metrics["global_step"] == PREEMPTED_EPOCHS * 8
        assert min(step for step, _ in metrics["batches"]) == stopped, "resuming repeated or skipped steps"
    assert_trained_like_one_process(run, Run(reference_out, reference))


# ---------------------------------------------------------------------------------------------
# The hang watchdog
# ---------------------------------------------------------------------------------------------
WATCHDOG_TIMEOUT = 10.0
MARGIN = 5.0  # writing the traceback, leaving the process group, interpreter shutdown


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "Error" in line and "global_step" in line]
    assert lines, f"no error naming a global step in:\n{stderr[-6000:]}"
    return lines[-1]


def run_until_it_fails(processes: list[Process], limit: float) -> None:
    try:
        for process in processes:
            process.wait(limit)
    finally:
        for process in processes:
            if process.popen.poll() is None:
                process.kill_all()


def test_when_a_rank_dies_the_other_exits_within_the_timeout_naming_the_step_and_the_ranks(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    rank0 = Process(script_command(out, "--die-at", "5", "--die-rank", "1", "--timeout", str(WATCHDOG_TIMEOUT)),
                    clean_environment(), tmp_path / "logs", "rank0")
    try:
        status = rank0.wait(WATCHDOG_TIMEOUT + RUN_TIMEOUT)
        ended = time.time()
        assert status is not None, f"rank 0 hung after rank 1 died:\n{rank0.report()}"
        assert status != 0, f"rank 0 exited 0 although rank 1 died:\n{rank0.report()}"
        died = json.loads((out / "died.rank1.json").read_text())["time"]
        assert ended - died < WATCHDOG_TIMEOUT + MARGIN, f"rank 0 took {ended - died:.1f} s to give up"
        message = _error_line(rank0.stderr)
        assert "global_step 5" in message and "rank 0" in message and "rank 1" in message, message
        assert rank0.survivors() == [], f"processes left behind: {rank0.survivors()}"
    finally:
        rank0.kill_all()


@pytest.mark.slow
def test_when_a_rank_stalls_the_other_exits_within_the_timeout_and_stops_it(tmp_path):
    timeout = 5.0
    out = tmp_path / "out"
    out.mkdir()
    rank0 = Process(script_command(out, "--die-at", "5", "--die-rank", "1", "--hang", "--timeout", str(timeout)),
                    clean_environment(), tmp_path / "logs", "rank0")
    try:
        status = rank0.wait(timeout + 30)
        ended = time.time()
        assert status is not None, f"rank 0 was still running {timeout + 30:.0f} s after start:\n{rank0.report()}"
        assert status != 0
        stalled = json.loads((out / "stalled.rank1.json").read_text())
        assert ended - stalled["time"] < timeout + MARGIN, f"rank 0 took {ended - stalled['time']:.1f} s"
        message = _error_line(rank0.stderr)
        assert "global_step 5" in message and "rank 1" in message, message
        deadline = time.monotonic() + MARGIN
        while psutil.pid_exists(stalled["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not rank0.survivors(), f"the stalled rank was left running: {rank0.survivors()}"
    finally:
        rank0.kill_all()


@pytest.mark.slow
def test_when_rank_zero_dies_the_other_rank_exits_within_the_timeout(tmp_path):
    # Rank 0 also hosts the rendezvous store; SLURM-style launch, so rank 1 is nobody's child.
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    options = ("--die-at", "5", "--die-rank", "0", "--timeout", str(WATCHDOG_TIMEOUT))
    processes = [Process(script_command(out, *options), slurm_environment(rank, port), tmp_path / "logs",
                         f"rank{rank}") for rank in (0, 1)]
    try:
        run_until_it_fails(processes, WATCHDOG_TIMEOUT + RUN_TIMEOUT)
        rank1 = processes[1]
        assert rank1.popen.returncode is not None, f"rank 1 hung after rank 0 died:\n{rank1.report()}"
        assert rank1.popen.returncode != 0, rank1.report()
        died = json.loads((out / "died.rank0.json").read_text())["time"]
        ended = time.time() - (time.monotonic() - rank1.ended)
        assert ended - died < WATCHDOG_TIMEOUT + MARGIN, f"rank 1 took {ended - died:.1f} s to give up"
        message = _error_line(rank1.stderr)
        assert "global_step 5" in message and "rank 0" in message, message
    finally:
        for process in processes:
            process.kill_all()


# ---------------------------------------------------------------------------------------------
# FSDP: sharded training, consolidated checkpoints
# ---------------------------------------------------------------------------------------------
def test_fsdp_trains_like_one_process_and_writes_a_full_checkpoint(tmp_path, one_process):
    run = launch("self_launch", tmp_path / "out", "--strategy", "fsdp")
    (checkpoint_path,) = (run.out / "lightning_logs").glob("version_*/checkpoints/*.ckpt")
    checkpoint = torch.load(checkpoint_path, weights_only=True)  # plain tensors: no DTensor left in the file
    single = one_process.weights(0)
    assert set(checkpoint["state_dict"]) == set(single)
    for name, value in single.items():
        assert type(checkpoint["state_dict"][name]) is torch.Tensor
        assert checkpoint["state_dict"][name].shape == value.shape
        assert torch.allclose(checkpoint["state_dict"][name], value, atol=1e-6, rtol=0), name
    assert [json.loads((run.out / f"metrics.rank{rank}.json").read_text())["world_size"] for rank in (0, 1)] == [2, 2]
