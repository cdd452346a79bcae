"""Exact resume: the data order, the random state and the position come back, so training continues bitwise.

A run is interrupted (an exception, or a real SIGTERM / SIGUSR1 sent to this process), a fresh Trainer and
model resume from the checkpoint, and the result is compared tensor by tensor with an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from engineering import Callback, ModelCheckpoint, ResumableSampler, Trainer, seed_everything
from engineering.checkpointing.checkpoint import load_checkpoint
from engineering.data.batches import epoch_batches, with_resumable_sampler
from research import LightningModule
from tests.helpers import QUIET

FLAGS = {**QUIET, "enable_checkpointing": True, "num_sanity_val_steps": 0}


class Recorded(Dataset):
    """40 samples of 8 features; remembers which indices were read."""

    def __init__(self, seed: int = 1) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(40, 8, generator=generator)
        self.y = torch.randint(0, 2, (40,), generator=generator)
        self.read: list[int] = []

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int):
        self.read.append(index)
        return self.x[index], self.y[index]


class Noisy(LightningModule):
    """Dropout (random numbers every step), Adam, and a learning rate that changes every 3 steps."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.3), torch.nn.Linear(16, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True)  # its epoch mean must cover the whole epoch after a resume
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=0.01)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.9)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class Interrupted(Exception):
    pass


class InterruptAt(Callback):
    """Raise once ``global_step`` reaches ``step``: that step's checkpoint is never written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Interrupted


class SignalAt(Callback):
    """Send ``signum`` to this very process at the start of batch ``batch_idx`` once ``global_step`` is ``step``."""

    def __init__(self, signum: int, step: int, batch_idx: int | None = None) -> None:
        self.signum, self.step, self.batch_idx = signum, step, batch_idx

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and self.batch_idx in (None, batch_idx):
            os.kill(os.getpid(), self.signum)
            self.step = -1


@dataclass
class Run:
    model: Noisy
    trainer: Trainer
    data: Recorded
    rng_after: torch.Tensor  # torch's random state when fit returned


def train(root: Path, loader_from=None, ckpt_path=None, extra=(), **flags) -> Run:
    """Seed, build, fit 3 epochs of 10 batches (5 optimizer steps each), checkpointing every step."""
    seed_everything(0)
    data = Recorded()
    loader = (loader_from or (lambda d: DataLoader(d, batch_size=4, shuffle=True)))(data)
    model = Noisy()
    callbacks = [ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_train_steps=1), *extra]
    trainer = Trainer(max_epochs=3, accumulate_grad_batches=2, val_check_interval=4, callbacks=callbacks,
                      default_root_dir=root, **{**FLAGS, **flags})
    try:
        trainer.fit(model, loader, DataLoader(Recorded(seed=2), batch_size=8), ckpt_path=ckpt_path)
    except Interrupted:
        pass
    return Run(model, trainer, data, torch.get_rng_state())


def assert_same_run(resumed: Run, straight: Run) -> None:
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    optimizer, expected = resumed.trainer.optimizers[0].state_dict(), straight.trainer.optimizers[0].state_dict()
    assert optimizer["param_groups"] == expected["param_groups"]
    for index, state in expected["state"].items():
        assert all(torch.equal(optimizer["state"][index][key], value) for key, value in state.items())
    scheduler = resumed.trainer.lr_scheduler_configs[0].scheduler.state_dict()
    assert scheduler == straight.trainer.lr_scheduler_configs[0].scheduler.state_dict()
    assert resumed.trainer.progress == straight.trainer.progress
    assert torch.equal(resumed.rng_after, straight.rng_after)
    # Summed in two parts across the resume, so equal up to rounding.
    torch.testing.assert_close(resumed.trainer.callback_metrics["train_loss_epoch"],
                               straight.trainer.callback_metrics["train_loss_epoch"], rtol=1e-6, atol=0)


@pytest.fixture
def straight(tmp_path) -> Run:
    return train(tmp_path / "straight")


# -------------------------------------------------------------------------------------------------
# Interrupted by an exception, resumed in a fresh Trainer
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("interrupt_at, resumes_at", [(3, (0, 4)), (6, (1, 0)), (12, (2, 2))],
                         ids=["mid-epoch", "epoch-boundary", "later-epoch"])
def test_resume_from_last_continues_bitwise(tmp_path, straight, interrupt_at, resumes_at):
    train(tmp_path, extra=[InterruptAt(interrupt_at)])
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert (last["progress"]["epoch"], last["progress"]["batch_idx"]) == resumes_at

    resumed = train(tmp_path, ckpt_path="last")
    assert_same_run(resumed, straight)


def test_a_resumed_epoch_skips_what_was_trained_without_reading_it(tmp_path, straight):
    train(tmp_path, extra=[InterruptAt(3)])
    resumed = train(tmp_path, ckpt_path="last")

    consumed = 4 * 4  # the checkpoint was taken after batch 3 of epoch 0, batch_size 4
    assert resumed.data.read == straight.data.read[consumed:]


def test_a_loader_without_a_resumable_order_is_read_past(tmp_path):
    as_list = lambda data: [(data.x[i:i + 4], data.y[i:i + 4]) for i in range(0, 40, 4)]  # noqa: E731
    straight = train(tmp_path / "straight", loader_from=as_list)
    train(tmp_path, loader_from=as_list, extra=[InterruptAt(3)])
    assert_same_run(train(tmp_path, loader_from=as_list, ckpt_path="last"), straight)


class Cursor(Sampler[int]):
    """A sampler that keeps its own place: it hands out indices in order and can say where it is."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.position = 0
        self.loaded: list[dict] = []

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        while self.position < self.length:
            self.position += 1
            yield self.position - 1
        self.position = 0

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.loaded.append(state)
        self.position = state["position"]


def test_a_sampler_with_state_dict_keeps_its_own_place(tmp_path):
    with_cursor = lambda data: DataLoader(data, batch_size=4, sampler=Cursor(len(data)))  # noqa: E731
    straight = train(tmp_path / "straight", loader_from=with_cursor)
    train(tmp_path, loader_from=with_cursor, extra=[InterruptAt(3)])
    resumed = train(tmp_path, loader_from=with_cursor, ckpt_path="last")

    assert resumed.trainer.train_dataloader.sampler.loaded == [{"position": 16}]
    assert resumed.data.read == straight.data.read[16:]  # nothing read twice: the Trainer did not skip on its own
    assert_same_run(resumed, straight)


# -------------------------------------------------------------------------------------------------
# The sampler
# -------------------------------------------------------------------------------------------------
def test_the_resumable_sampler_order_depends_on_seed_and_epoch_only():
    def order(seed: int, epoch: int) -> list[int]:
        sampler = ResumableSampler(10, shuffle=True)
        sampler.seed = seed
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(7, 0) == order(7, 0) and sorted(order(7, 0)) == list(range(10))
    assert order(7, 1) != order(7, 0) and order(8, 0) != order(7, 0)

    sampler = ResumableSampler(10, shuffle=True)
    sampler.seed = 7
    sampler.skip_next(4)
    assert list(sampler) == order(7, 0)[4:]
    assert list(sampler) == order(7, 0)  # the skip applied once


def test_ranks_share_one_order_and_take_turns():
    def rank_order(rank: int) -> list[int]:
        sampler = ResumableSampler(10, shuffle=True, num_replicas=4, rank=rank)
        sampler.seed = 3
        return list(sampler)

    whole = ResumableSampler(10, shuffle=True)
    whole.seed = 3
    order = list(whole)
    assert [rank_order(rank) for rank in range(4)] == [(order + order[:2])[rank::4] for rank in range(4)]
    assert len(ResumableSampler(10, shuffle=True, num_replicas=4)) == 3


def test_a_shuffled_data_loader_gets_a_resumable_sampler_and_keeps_its_batching(tmp_path):
    data = Recorded()
    loader = DataLoader(data, batch_size=3, shuffle=True, drop_last=True)
    replaced = with_resumable_sampler(loader)
    assert isinstance(replaced.sampler, ResumableSampler) and replaced.sampler.shuffle
    assert (replaced.batch_size, replaced.drop_last, len(replaced)) == (3, True, 13)
    assert with_resumable_sampler(DataLoader(data, batch_size=3, sampler=Cursor(40))).sampler.__class__ is Cursor

    batches = list(epoch_batches(replaced, len(replaced), epoch=2, seed=5, start=10))
    assert [batch_idx for batch_idx, _, _ in batches] == [10, 11, 12] and batches[-1][2]
    assert len(data.read) == 9  # the ten skipped batches were never loaded


def test_the_trainer_leaves_samplers_alone_when_told_to(tmp_path):
    trainer = Trainer(max_epochs=1, use_distributed_sampler=False, default_root_dir=tmp_path, **QUIET)
    loader = DataLoader(Recorded(), batch_size=4, shuffle=True)
    trainer.fit(Noisy(), loader)
    assert trainer.train_dataloader is loader


# -------------------------------------------------------------------------------------------------
# Preemption: real signals, sent to this process
# -------------------------------------------------------------------------------------------------
def test_sigterm_saves_after_the_step_and_exits_cleanly_then_resume_is_exact(tmp_path, straight):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited:
        train(tmp_path, extra=[SignalAt(signal.SIGTERM, step=3)])
    assert exited.value.code == 0
    assert signal.getsignal(signal.SIGTERM) is before  # the handler lived only while fit ran

    saved = load_checkpoint(tmp_path / "hpc_ckpt_1.ckpt")
    assert saved["global_step"] == 4  # the window of steps 3-4 was open: it finished before saving
    assert_same_run(train(tmp_path, ckpt_path="last"), straight)


def test_preemption_waits_for_the_accumulation_window_to_close(tmp_path):
    with pytest.raises(SystemExit):
        train(tmp_path, extra=[SignalAt(signal.SIGTERM, step=1, batch_idx=2)])  # batch 2 opens a window
    saved = load_checkpoint(tmp_path / "hpc_ckpt_1.ckpt")
    assert (saved["global_step"], saved["progress"]["batch_idx"]) == (2, 4)


def test_under_slurm_sigusr1_saves_requeues_and_the_next_job_resumes_by_itself(tmp_path, monkeypatch, straight):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "requeued"}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")

    with pytest.raises(SystemExit) as exited:
        train(tmp_path, extra=[SignalAt(signal.SIGUSR1, step=6)])
    assert exited.value.code == 0
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "4242"]
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL

    resumed = train(tmp_path)  # ckpt_path=None: under SLURM the preemption checkpoint is found
    assert Path(resumed.trainer.ckpt_path).name == "hpc_ckpt_1.ckpt"
    assert_same_run(resumed, straight)


def test_one_process_keeps_the_users_sampler_and_draws_nothing_extra_from_the_global_generator(tmp_path):
    seed_everything(0)
    by_hand = Recorded()
    for _ in DataLoader(by_hand, batch_size=4, shuffle=True):  # a hand-written loop's epoch
        pass
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    model, loader = Noisy(), DataLoader(Recorded(), batch_size=4, shuffle=True)
    seed_everything(0)  # the order then depends on the global generator exactly as the hand-written loop's did
    trainer.fit(model, loader)
    assert trainer.train_dataloader is loader
    assert loader.dataset.read == by_hand.read


def test_a_mid_epoch_resume_with_a_loader_generator_continues_bitwise(tmp_path):
    with_generator = lambda data: DataLoader(  # noqa: E731
        data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(5)
    )
    straight = train(tmp_path / "straight", loader_from=with_generator)
    train(tmp_path, loader_from=with_generator, extra=[InterruptAt(7)])
    resumed = train(tmp_path, loader_from=with_generator, ckpt_path="last")
    assert resumed.data.read == straight.data.read[-len(resumed.data.read):]
    assert_same_run(resumed, straight)


def test_the_sanity_check_leaves_the_random_state_as_it_found_it(tmp_path):
    def fit(sanity_steps: int) -> torch.Tensor:
        seed_everything(0)
        model = Noisy()
        trainer = Trainer(max_epochs=1, num_sanity_val_steps=sanity_steps, default_root_dir=tmp_path, **QUIET)
        trainer.fit(model, DataLoader(Recorded(), batch_size=4, shuffle=True),
                    DataLoader(Recorded(seed=2), batch_size=8, shuffle=True))
        return model.net[0].weight.detach().clone()

    assert torch.equal(fit(0), fit(2))
