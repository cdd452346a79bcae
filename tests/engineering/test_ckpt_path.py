"""``ckpt_path="last"`` and the automatic resume under SLURM take only this run's preemption checkpoints, never
one that another experiment left in the same default_root_dir, and say which file they restore from."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from engineering import Callback, Trainer
from helpers import TinyModule, tiny_loader

QUIET_WITH_LOGGER = dict(log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)


class TermAtStep(Callback):
    """SIGTERM to this process at the start of the batch after ``step`` optimizer steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def preempted(root: Path, step: int = 2, **flags) -> None:
    """An experiment in ``root`` that a preemption stops after ``step`` steps, leaving hpc_ckpt_<n>.ckpt."""
    trainer = Trainer(max_epochs=2, callbacks=[TermAtStep(step)], default_root_dir=root,
                      **{"logger": True, **QUIET_WITH_LOGGER, **flags})
    with pytest.raises(SystemExit):
        trainer.fit(TinyModule(), tiny_loader())


def test_last_in_a_new_experiment_leaves_out_an_earlier_experiments_preemption_checkpoint(tmp_path):
    preempted(tmp_path)  # lightning_logs/version_0, preempted at step 2
    assert (tmp_path / "hpc_ckpt_1.ckpt").is_file()
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, logger=True, **QUIET_WITH_LOGGER)
    with pytest.warns(UserWarning) as caught:
        trainer.fit(TinyModule(), tiny_loader(), ckpt_path="last")
    messages = [str(warning.message) for warning in caught]
    assert any('ckpt_path="last" leaves out hpc_ckpt_1.ckpt' in message and "another run was preempted" in message
               and "pass its path as ckpt_path" in message for message in messages), messages
    assert any('ckpt_path="last" found no checkpoint to resume from' in message for message in messages)
    assert trainer.ckpt_path is None and trainer.global_step == 4  # a fresh epoch of 4 steps


def test_last_resumes_this_runs_own_preemption_checkpoint_and_says_from_which_file(tmp_path, capsys):
    preempted(tmp_path, logger=False)  # no logger: the run's log directory is default_root_dir itself
    trainer = Trainer(max_epochs=2, default_root_dir=tmp_path, logger=False, **QUIET_WITH_LOGGER)
    trainer.fit(TinyModule(), tiny_loader(), ckpt_path="last")
    assert f"Restored all states from the checkpoint at {tmp_path / 'hpc_ckpt_1.ckpt'}" in capsys.readouterr().out
    assert trainer.global_step == 8


def test_an_explicit_path_resumes_from_another_experiments_preemption_checkpoint(tmp_path, capsys):
    preempted(tmp_path)
    trainer = Trainer(max_epochs=2, default_root_dir=tmp_path, logger=True, **QUIET_WITH_LOGGER)
    trainer.fit(TinyModule(), tiny_loader(), ckpt_path=tmp_path / "hpc_ckpt_1.ckpt")
    assert "Restored all states from the checkpoint at" in capsys.readouterr().out
    assert trainer.global_step == 8


def slurm_job(monkeypatch, job_id: str) -> None:
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_JOB_ID", job_id)


def test_under_slurm_a_new_job_does_not_resume_from_another_jobs_preemption_checkpoint(tmp_path, monkeypatch):
    slurm_job(monkeypatch, "111")
    preempted(tmp_path)
    slurm_job(monkeypatch, "222")
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, logger=True, **QUIET_WITH_LOGGER)
    with pytest.warns(UserWarning, match=r"the automatic resume under SLURM leaves out hpc_ckpt_1\.ckpt"):
        trainer.fit(TinyModule(), tiny_loader())
    assert trainer.ckpt_path is None and trainer.global_step == 4


def test_under_slurm_the_requeued_job_resumes_although_its_logger_starts_a_new_version(tmp_path, monkeypatch,
                                                                                      capsys):
    slurm_job(monkeypatch, "111")
    preempted(tmp_path)
    trainer = Trainer(max_epochs=2, default_root_dir=tmp_path, logger=True, **QUIET_WITH_LOGGER)
    trainer.fit(TinyModule(), tiny_loader())
    assert Path(trainer.ckpt_path).name == "hpc_ckpt_1.ckpt"
    assert trainer.log_dir.endswith("version_1")
    assert "Restored all states from the checkpoint at" in capsys.readouterr().out
    assert trainer.global_step == 8
