"""A DataLoader worker killed mid-epoch (SIGKILL, as the OOM killer does): a clear error naming the worker.

tests/e2e/kill_resume_script.py trains with two workers; the one that reads a chosen sample kills itself. The
run must fail at once (not hang waiting for the batch), say which worker died, run on_exception and teardown,
and resuming from its last checkpoint must end bitwise equal to a run that was never interrupted.
"""

from __future__ import annotations

import signal

import pytest

from tests.e2e.test_kill_resume import ForkedRun, assert_bitwise_equal, final_state, fork_server, uninterrupted
from tests.faults.test_signals import Run

__all__ = ["fork_server", "uninterrupted"]  # fixtures the test below uses, shared with the SIGKILL tests


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_fails_the_run_naming_it_and_resume_is_exact(fork_server, uninterrupted, tmp_path):
    run = Run(tmp_path, "--num-workers", "2", "--kill-worker-at", "30")
    run.signal_after("never", signal.SIGINT)
    status, _ = run.end()
    output = run.output
    killed = (tmp_path / "killed_worker").read_text()

    assert status == 1, output[-3000:]
    assert f"DataLoader worker (pid {killed}) is killed by signal: Killed" in output, output[-3000:]
    assert "EXCEPTION RuntimeError" in output and "TEARDOWN" in output and "DONE" not in output

    resumed = ForkedRun(fork_server, tmp_path, 1)
    assert resumed.wait_for("RESUMED") != ["RESUMED", "0", "0"]  # from where the checkpoints left it
    resumed.finish()
    assert_bitwise_equal(final_state(tmp_path), uninterrupted)
