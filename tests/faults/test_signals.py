"""Ctrl-C and SIGTERM sent to a real training process (tests/e2e/kill_resume_script.py in a fresh interpreter).

Ctrl-C (SIGINT) stops at the next step boundary as Lightning's graceful shutdown does: one line, on_exception
(an OnExceptionCheckpoint is written), teardown, loggers flushed, exit status 1; resuming from the checkpoint it
left ends bitwise equal to a run that was never interrupted. A second Ctrl-C does not wait for the step to end.
SIGTERM during a long validation is answered at the next validation batch, not when the validation ends.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engineering.checkpointing.checkpoint import load_checkpoint
from tests.e2e.test_kill_resume import (
    OPTIONS, SCRIPT, ForkedRun, assert_bitwise_equal, final_state, fork_server, uninterrupted,
)

__all__ = ["fork_server", "uninterrupted"]  # fixtures the tests below use, shared with the SIGKILL tests

LIMIT = 30.0  # seconds a run may take before the test kills it


class Run:
    """The script in a fresh interpreter; each line it prints is kept with the time it arrived."""

    def __init__(self, root: Path, *options: str) -> None:
        command = [sys.executable, "-u", str(SCRIPT), str(root), *OPTIONS, *options]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[tuple[float, str]] = []
        self.watchdog = threading.Timer(LIMIT, self.process.kill)  # a hung run must not hang the suite
        self.watchdog.start()

    def signal_after(self, prefix: str, signum: int, count: int = 1) -> float:
        """Send ``signum`` ``count`` times (0.2 s apart) once a line starts with ``prefix``; returns when the
        first was sent. Reads the rest of the output."""
        sent = None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
            if sent is None and line.startswith(prefix):
                sent = time.monotonic()
                for index in range(count):
                    self.process.send_signal(signum)
                    if index + 1 < count:
                        time.sleep(0.2)
        return sent

    def end(self) -> tuple[int, float]:
        status = self.process.wait(timeout=LIMIT)
        self.watchdog.cancel()
        return status, time.monotonic()

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


@pytest.mark.slow
def test_ctrl_c_stops_at_the_step_boundary_shuts_down_gracefully_and_resume_is_exact(
    fork_server, uninterrupted, tmp_path
):
    run = Run(tmp_path, "--on-exception-checkpoint", "--csv-logs")
    run.signal_after("STEP 5", signal.SIGINT)
    status, _ = run.end()
    output = run.output

    assert status == 1, output[-3000:]
    assert output.count("Detected KeyboardInterrupt, attempting graceful shutdown ...") == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    events = [line.split()[0] for line in output.splitlines() if line.split()[:1] in (["EXCEPTION"], ["TEARDOWN"])]
    assert events == ["EXCEPTION", "TEARDOWN"] and "EXCEPTION KeyboardInterrupt" in output
    steps = [int(line.split()[1]) for line in output.splitlines() if line.startswith("STEP")]
    saved = load_checkpoint(tmp_path / "on_exception" / "on_exception.ckpt")
    assert saved["global_step"] == steps[-1] in (5, 6)  # the step in progress finished; no later one started
    with open(next((tmp_path / "logs").rglob("metrics.csv"))) as logged:  # flushed by the shutdown
        assert max(int(row["step"]) for row in csv.DictReader(logged)) == steps[-1] - 1

    resumed = ForkedRun(fork_server, tmp_path, 1)  # resumes from the newest checkpoint, the one Ctrl-C left
    assert resumed.wait_for("RESUMED") == ["RESUMED", str(saved["progress"]["epoch"]),
                                           str(saved["progress"]["batch_idx"])]
    resumed.finish()
    assert_bitwise_equal(final_state(tmp_path), uninterrupted)


@pytest.mark.slow
def test_a_second_ctrl_c_does_not_wait_for_the_step_to_end(tmp_path):
    run = Run(tmp_path, "--step-seconds", "3")  # the first step (two batches) ends 6 s after training starts
    sent = run.signal_after("RESUMED", signal.SIGINT, count=2)
    status, ended = run.end()
    assert status == 1 and ended - sent < 4.0, f"{ended - sent:.1f} s:\n{run.output[-3000:]}"
    assert "EXCEPTION KeyboardInterrupt" in run.output and "STEP" not in run.output


@pytest.mark.slow
def test_sigterm_during_a_long_validation_is_answered_at_the_next_validation_batch(
    fork_server, uninterrupted, tmp_path
):
    batch_seconds = 0.5  # 24 batches: the whole validation would take 12 s
    run = Run(tmp_path, "--val-seconds", str(batch_seconds), "--val-batch-size", "2")
    sent = run.signal_after("VAL 2", signal.SIGTERM)
    status, ended = run.end()
    output = run.output

    assert status == 0, output[-3000:]
    assert ended - sent < batch_seconds + 4.0, f"exited {ended - sent:.1f} s after SIGTERM:\n{output[-3000:]}"
    assert "SIGTERM received: saved" in output and "VAL 4" not in output, output[-3000:]
    saved = load_checkpoint(tmp_path / "hpc_ckpt_1.ckpt")
    assert saved["global_step"] == 3 and saved["progress"]["batch_idx"] == 6  # validation followed batch 5

    resumed = ForkedRun(fork_server, tmp_path, 1)
    resumed.finish()
    assert_bitwise_equal(final_state(tmp_path), uninterrupted)
