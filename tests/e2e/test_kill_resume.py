"""Fault tolerance with real processes: SIGKILL at random instants, SIGTERM, then resume.

A training run (kill_resume_script.py) checkpoints after every optimizer step. The kill tests fork it from a
multiprocessing fork server that has already imported torch and tribus, so each run starts in milliseconds;
every run is still a separate OS process, and SIGKILL gives it no chance to clean up. They kill it during
steps and while a checkpoint is being written (the checkpoint carries ballast, so writes take a while),
check that every file under a final name loads, resume with ckpt_path="last", and compare the finished
run with one that was never interrupted, tensor by tensor. The SIGTERM test runs the script in a fresh
interpreter, as a scheduler would.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from engineering.checkpointing.checkpoint import load_checkpoint
from tests.e2e.kill_resume_script import run_logged

SCRIPT = Path(__file__).with_name("kill_resume_script.py")
OPTIONS = ["--ballast-mb", "4", "--step-seconds", "0.01"]
WAIT = 120.0  # seconds a run may take to reach a point before the test gives up on it


@pytest.fixture(scope="module")
def fork_server() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([run_logged.__module__])
    return context


class ForkedRun:
    """One training process, and the lines it prints (to a file: a pipe could be left half-written by a kill)."""

    def __init__(self, context: multiprocessing.context.BaseContext, root: Path, number: int,
                 options: list[str] = OPTIONS) -> None:
        self.log = root / f"run-{number}.log"
        self.process = context.Process(target=run_logged, args=([str(root), *options], str(self.log)))
        self.process.start()

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def wait_for(self, word: str, count: int = 1) -> list[str] | None:
        """The words of the ``count``-th line starting with ``word``; None if the run ended first."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            alive = self.process.is_alive()
            found = [line.split() for line in self.lines() if line.startswith(word + " ") or line == word]
            if len(found) >= count:
                return found[count - 1]
            if not alive:
                return None
            time.sleep(0.002)
        raise AssertionError(f"no {word!r} within {WAIT} s; the run printed: {self.lines()[-20:]}")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join()

    def finish(self) -> None:
        self.process.join(WAIT)
        if self.process.is_alive():
            self.kill()
            raise AssertionError(f"the run did not finish within {WAIT} s: {self.lines()[-30:]}")
        assert self.process.exitcode == 0, self.lines()[-30:]
        assert self.lines()[-1] == "DONE"


def final_state(root: Path) -> dict:
    return torch.load(root / "final.pt", weights_only=True)


def assert_bitwise_equal(actual: object, expected: object, where: str = "final") -> None:
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and torch.equal(actual, expected), where
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            assert_bitwise_equal(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for index, (left, right) in enumerate(zip(actual, expected)):
            assert_bitwise_equal(left, right, f"{where}[{index}]")
    else:
        assert actual == expected, where


def assert_every_checkpoint_loads(directory: Path) -> None:
    for path in directory.glob("*.ckpt"):
        checkpoint = load_checkpoint(path)  # verifies the checksum
        assert "progress" in checkpoint and "optimizer_states" in checkpoint, path


@pytest.fixture(scope="module")
def uninterrupted(fork_server, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("uninterrupted")
    run = ForkedRun(fork_server, root, 0)
    run.finish()
    return final_state(root)


def kill_and_resume(context, root: Path, kills: int, chooser: random.Random, expected: dict,
                    options: list[str] = OPTIONS) -> dict[str, int]:
    """Kill runs at random points until ``kills`` kills happened; the run after that finishes.

    Half the kills wait for a step to end and strike during the next one; the others strike just after a
    checkpoint write began. A run that finishes before its kill point is compared with ``expected`` and the
    training starts over. Returns how many kills left a half-written temporary file (a kill mid-write) and
    how many runs resumed in the middle of an epoch.
    """
    seen = {"kills": 0, "mid_write": 0, "mid_epoch_resumes": 0}
    checkpoints = root / "checkpoints"
    for number in range(10 * kills):
        run = ForkedRun(context, root, number, options)
        resumed = run.wait_for("RESUMED")
        if resumed is not None and int(resumed[2]) > 0:
            seen["mid_epoch_resumes"] += 1
        if seen["kills"] == kills:
            run.finish()
            assert_every_checkpoint_loads(checkpoints)
            return seen
        if chooser.random() < 0.5:
            reached = run.wait_for("STEP", chooser.randint(1, 3))
            time.sleep(chooser.uniform(0.0, 0.02))
        else:
            reached = run.wait_for("SAVE", chooser.randint(1, 4))
            time.sleep(chooser.uniform(0.0, 0.02))
        if reached is None:  # it finished before the chosen point: check it, then start over from nothing
            run.finish()
            assert_bitwise_equal(final_state(root), expected)
            for leftover in [*checkpoints.glob("*.ckpt"), root / "final.pt"]:
                leftover.unlink()
            continue
        run.kill()
        seen["kills"] += 1
        seen["mid_write"] += any(checkpoints.glob(".*.tmp"))
        assert_every_checkpoint_loads(checkpoints)
    raise AssertionError(f"{kills} kills not reached: {seen}")


def test_sigkill_at_random_points_leaves_loadable_checkpoints_and_resume_is_bitwise_exact(
    fork_server, uninterrupted, tmp_path
):
    seen = kill_and_resume(fork_server, tmp_path, kills=22, chooser=random.Random(20240611), expected=uninterrupted)

    assert_bitwise_equal(final_state(tmp_path), uninterrupted)  # weights and the whole optimizer state
    assert seen["kills"] == 22
    assert seen["mid_write"] >= 1, "no kill landed inside a checkpoint write"
    assert seen["mid_epoch_resumes"] >= 1, "no run resumed in the middle of an epoch"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_many_more_sigkills(fork_server, uninterrupted, tmp_path, seed):
    seen = kill_and_resume(fork_server, tmp_path, kills=60, chooser=random.Random(seed), expected=uninterrupted)

    assert_bitwise_equal(final_state(tmp_path), uninterrupted)
    assert seen["mid_write"] >= 5 and seen["mid_epoch_resumes"] >= 5


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 6])
def test_many_sigkills_with_async_save(fork_server, uninterrupted, tmp_path, seed):
    """The files are written by ModelCheckpoint's background thread: a kill still leaves only complete files, and
    every resume is exact (the uninterrupted run saved synchronously)."""
    seen = kill_and_resume(fork_server, tmp_path, kills=40, chooser=random.Random(seed), expected=uninterrupted,
                           options=[*OPTIONS, "--async-save"])

    assert_bitwise_equal(final_state(tmp_path), uninterrupted)
    assert seen["mid_write"] >= 3 and seen["mid_epoch_resumes"] >= 3


def test_sigterm_saves_after_the_step_exits_0_and_resume_is_exact(uninterrupted, tmp_path):
    command = [sys.executable, "-u", str(SCRIPT), str(tmp_path), *OPTIONS]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(WAIT, process.kill)  # a hung run must not hang the suite
    watchdog.start()
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if line.startswith("STEP 5"):
                process.send_signal(signal.SIGTERM)
    finally:
        watchdog.cancel()
    assert process.wait(timeout=WAIT) == 0, "".join(output[-30:])
    printed = "".join(output)
    assert "SIGTERM received: saved" in printed and "DONE" not in printed
    steps = [int(line.split()[1]) for line in output if line.startswith("STEP")]
    saved = load_checkpoint(tmp_path / "hpc_ckpt_1.ckpt")
    assert saved["global_step"] == steps[-1] >= 5  # saved after the step in progress; no later step ran

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=WAIT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"RESUMED {saved['progress']['epoch']} {saved['progress']['batch_idx']}" in resumed.stdout
    assert_bitwise_equal(final_state(tmp_path), uninterrupted)
