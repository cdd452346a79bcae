"""On a CUDA GPU: the training step adds no host-device synchronisation (nor do background loggers and the
progress bar, on a terminal or not), fp16 mixed precision matches a hand-written GradScaler loop, and a run
resumed from a checkpoint ends with the same weights and scaler.

Skipped without CUDA (CI has none); bench/gpu_sync.py and bench/gpu_check.py print the figures.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auxiliary import CSVLogger, TensorBoardLogger, TQDMProgressBar
from engineering import Callback, Trainer
from research import LightningModule
from tests.helpers import QUIET, Terminal

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


class Batches:
    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)


def batches(count: int = 12) -> Batches:
    generator = torch.Generator(device="cuda").manual_seed(1)
    return Batches([(torch.randn(32, 64, device="cuda", generator=generator),
                     torch.randint(0, 4, (32,), device="cuda", generator=generator)) for _ in range(count)])


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))


class Classifier(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = network()

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        loss = F.cross_entropy(self.net(inputs), targets)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class RaiseOnSync(Callback):
    """From the second batch to the end of the ``last``-th from the end, any synchronising CUDA call raises."""

    def __init__(self, last: int = 1) -> None:
        self.last = last

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 1:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == trainer.num_training_batches - self.last:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_the_training_step_never_synchronises_with_the_host(tmp_path, precision):
    trainer = Trainer(accelerator="cuda", devices=1, precision=precision, max_epochs=1, default_root_dir=tmp_path,
                      callbacks=[RaiseOnSync()], log_every_n_steps=1000, **QUIET)
    try:
        trainer.fit(Classifier(), batches())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.global_step == 12
    assert trainer.callback_metrics["train_loss"].device.type == "cuda"  # still a tensor: no .item() was needed


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "file"])
def test_background_loggers_and_the_progress_bar_add_no_synchronisation_to_the_steps(tmp_path, terminal):
    # Every step flushes to TensorBoard and CSV (their writer thread waits for the values, not the step); the bar
    # reads its metrics at most once an hour, and at the epoch's last batch, after the checked ones.
    bar = TQDMProgressBar(stream=Terminal() if terminal else (tmp_path / "bar.txt").open("w"), metrics_interval=3600)
    loggers = [TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv", flush_logs_every_n_steps=1)]
    trainer = Trainer(accelerator="cuda", devices=1, max_epochs=1, default_root_dir=tmp_path, log_every_n_steps=1,
                      callbacks=[RaiseOnSync(last=2), bar], logger=loggers, enable_checkpointing=False,
                      enable_model_summary=False)
    try:
        trainer.fit(Classifier(), batches())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    rows = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 12  # every step's value reached the logger, once training let it catch up


def test_fp16_mixed_matches_a_hand_written_grad_scaler_loop(tmp_path):
    module = Classifier()
    trainer = Trainer(accelerator="cuda", devices=1, precision="16-mixed", max_epochs=1, default_root_dir=tmp_path,
                      gradient_clip_val=1.0, **QUIET)
    trainer.fit(module, batches())

    net = network().cuda()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    for inputs, targets in batches():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = F.cross_entropy(net(inputs), targets)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    for mine, reference in zip(module.net.state_dict().values(), net.state_dict().values()):
        assert torch.equal(mine, reference)
    assert trainer.strategy.precision.scaler.get_scale() == scaler.get_scale()


def test_resuming_an_fp16_run_on_cuda_ends_where_an_uninterrupted_run_ends(tmp_path):
    flags = dict(accelerator="cuda", devices=1, precision="16-mixed", default_root_dir=tmp_path,
                 enable_progress_bar=False, enable_model_summary=False, logger=False)
    uninterrupted = Classifier()
    Trainer(max_epochs=2, enable_checkpointing=False, **flags).fit(uninterrupted, batches())

    first = Trainer(max_epochs=1, **flags)
    first.fit(Classifier(), batches())
    resumed = Classifier()
    trainer = Trainer(max_epochs=2, **flags)
    trainer.fit(resumed, batches(), ckpt_path=first.checkpoint_callback.last_model_path or
                first.checkpoint_callback.best_model_path)
    for mine, reference in zip(resumed.state_dict().values(), uninterrupted.state_dict().values()):
        assert torch.equal(mine, reference)
