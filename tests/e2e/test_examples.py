"""The examples run as a user runs them: as scripts, in a fresh process."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_example(name: str, tmp_path: Path, *arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *arguments],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def _printed(name: str, output: str) -> float:
    found = re.search(rf"^{name}: (\S+)$", output, re.MULTILINE)
    assert found, f"{name} was not printed:\n{output[-2000:]}"
    return float(found.group(1))


def test_the_gan_example_trains_both_networks_and_reports_both_losses(tmp_path):
    output = _run_example("gan.py", tmp_path, "--max_epochs", "1", "--limit_train_batches", "2")
    for loss in ("generator_loss", "discriminator_loss"):  # printed from callback_metrics: only self.log fills it
        assert math.isfinite(_printed(loss, output))


@pytest.mark.slow
def test_the_gan_example_learns_the_circle(tmp_path):
    output = _run_example("gan.py", tmp_path)
    mean_radius = float(re.search(r"radius ([0-9.]+) ±", output).group(1))
    assert abs(mean_radius - 1) < 0.15
