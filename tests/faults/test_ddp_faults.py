"""DDP with a rank killed or stalled at global step 5: every process ends within the collective timeout.

Two ranks over gloo on the CPU, started as a user starts them (``python ddp_script.py``: rank 0 launches rank 1).
Rank 0 or rank 1 dies without a word (``os._exit``) or stalls forever in ``training_step``. Whichever it is, every
process, the launcher included, is gone within the collective timeout plus a margin, none is left behind, the
launcher's exit status says it failed, and the output names the failed rank and the step it stopped at.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.e2e.test_ddp import Process, clean_environment, script_command

TIMEOUT = 10.0  # the collective timeout the runs use (also how long rank 0 waits for rank 1 to start)
MARGIN = 15.0  # reporting, leaving the process group, the watchdog's grace, interpreter exit, a loaded machine
STARTUP = 40.0  # two fresh interpreters importing torch, on a machine other jobs share


def run_with_fault(tmp_path, rank: int, stall: bool) -> tuple[Process, float, dict]:
    """Run until every process has ended (or the limit passed); returns the launcher, when the last process
    ended, and the fault's record (its time and pid)."""
    out = tmp_path / "out"
    out.mkdir()
    options = ["--die-at", "5", "--die-rank", str(rank), "--timeout", str(TIMEOUT)] + (["--hang"] if stall else [])
    launcher = Process(script_command(out, *options), clean_environment(), tmp_path / "logs", "rank0")
    record = out / f"{'stalled' if stall else 'died'}.rank{rank}.json"
    try:
        launcher.wait(STARTUP + TIMEOUT + MARGIN)
        deadline = time.monotonic() + MARGIN  # the launcher is gone: its children must follow (they may not)
        while launcher.survivors() and time.monotonic() < deadline:
            time.sleep(0.05)
        ended = time.time()
        assert record.exists(), f"the fault never happened:\n{launcher.report()}"
        survivors = launcher.survivors()
        assert not survivors, f"still running: {survivors}\n{launcher.report()}"
        return launcher, ended, json.loads(record.read_text())
    finally:
        launcher.kill_all()


def assert_ended_in_time(launcher: Process, ended: float, fault: dict) -> None:
    assert launcher.popen.returncode not in (None, 0), launcher.report()
    took = ended - fault["time"]
    assert took < TIMEOUT + MARGIN, f"every process ended only {took:.1f} s after the fault:\n{launcher.report()}"


@pytest.mark.slow
def test_rank_1_killed(tmp_path):
    launcher, ended, fault = run_with_fault(tmp_path, rank=1, stall=False)
    assert_ended_in_time(launcher, ended, fault)
    assert "rank 1: gone at global_step 5" in launcher.stderr, launcher.report()


@pytest.mark.slow
def test_rank_1_stalled(tmp_path):
    launcher, ended, fault = run_with_fault(tmp_path, rank=1, stall=True)
    assert_ended_in_time(launcher, ended, fault)
    assert "rank 1: at global_step 5 for" in launcher.stderr, launcher.report()


@pytest.mark.slow
def test_rank_0_killed(tmp_path):
    launcher, ended, fault = run_with_fault(tmp_path, rank=0, stall=False)
    assert_ended_in_time(launcher, ended, fault)
    assert "rank 1: " in launcher.stderr and "failed at global_step 5" in launcher.stderr, launcher.report()


@pytest.mark.slow
def test_rank_0_stalled_the_launcher_ends_itself_and_says_where_it_stood(tmp_path):
    launcher, ended, fault = run_with_fault(tmp_path, rank=0, stall=True)
    assert_ended_in_time(launcher, ended, fault)
    stderr = launcher.stderr
    assert "rank 0: at global_step 5 for" in stderr, launcher.report()  # what rank 1 saw when it gave up
    assert "DDP watchdog: rank 1" in stderr and "rank 0, which started it, is stuck at global_step 5" in stderr


@pytest.mark.slow
def test_ctrl_c_ends_every_rank_with_status_1_and_one_line(tmp_path):
    # What a terminal does: SIGINT to every process of the job. The ranks agree to stop at the same step.
    out = tmp_path / "out"
    out.mkdir()
    launcher = Process(script_command(out, "--step-seconds", "0.4", "--timeout", str(TIMEOUT)), clean_environment(),
                       tmp_path / "logs", "rank0")
    try:
        deadline = time.monotonic() + STARTUP
        while "step 2" not in launcher.stdout and launcher.popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        launcher._note_descendants()
        for process in launcher.survivors():
            os.kill(process.pid, signal.SIGINT)
        assert launcher.wait(STARTUP + TIMEOUT) == 1, launcher.report()
        output = launcher.stdout + launcher.stderr
        assert output.count("Detected KeyboardInterrupt, attempting graceful shutdown ...") == 1, launcher.report()
        assert "Traceback" not in output and "rank 0 step 9" not in output, launcher.report()
        deadline = time.monotonic() + MARGIN
        while launcher.survivors() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not launcher.survivors(), launcher.report()
    finally:
        launcher.kill_all()
