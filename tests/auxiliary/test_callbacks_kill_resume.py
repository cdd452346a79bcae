"""SWA, EMA, the Timer and the accumulation scheduler survive a real SIGKILL: a run killed mid-training and
resumed from its last checkpoint ends with the weights of a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.e2e.test_ddp import clean_environment

SCRIPT = Path(__file__).with_name("kill_resume_callbacks_script.py")
WAIT = 180.0  # a fresh interpreter imports torch first: slow on a busy machine


def start(root: Path, callback: str) -> tuple[subprocess.Popen, Path]:
    root.mkdir(parents=True, exist_ok=True)
    log = root / f"run-{len(list(root.glob('run-*.log')))}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, str(SCRIPT), str(root), callback], env=clean_environment(),
                                   stdout=output, stderr=subprocess.STDOUT, cwd=root)
    return process, log


def wait_for_line(process: subprocess.Popen, log: Path, line: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if line in log.read_text().splitlines():
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {line!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)
    process.kill()
    raise AssertionError(f"no {line!r} within {WAIT} s:\n{log.read_text()[-3000:]}")


def finish(process: subprocess.Popen, log: Path) -> None:
    try:
        process.wait(WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0 and log.read_text().splitlines()[-1] == "DONE", log.read_text()[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(("callback", "kill_after"), [
    ("swa", "STEP 14"),           # epoch 2 of 4, SWA averaging since epoch 1
    ("ema", "STEP 9"),            # mid-epoch 1
    ("timer", "STEP 11"),         # the budget runs out at step 17
    ("accumulation", "STEP 8"),   # epoch 1, accumulating 2 batches per step
])
def test_a_run_killed_and_resumed_ends_like_an_uninterrupted_one(tmp_path, callback, kill_after):
    whole, whole_log = start(tmp_path / "whole", callback)
    killed, killed_log = start(tmp_path / "killed", callback)
    wait_for_line(killed, killed_log, kill_after)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(WAIT)
    assert killed.returncode == -signal.SIGKILL
    finish(whole, whole_log)
    resumed, resumed_log = start(tmp_path / "killed", callback)
    finish(resumed, resumed_log)
    expected = torch.load(tmp_path / "whole" / "final.pt", weights_only=True)
    got = torch.load(tmp_path / "killed" / "final.pt", weights_only=True)
    assert got["global_step"] == expected["global_step"]
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(got["state_dict"][name], tensor), name
