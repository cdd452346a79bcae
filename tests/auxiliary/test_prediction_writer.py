"""BasePredictionWriter: the files written per batch and per epoch, with the right dataset indices, in one
process and with 2 DDP ranks over gloo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from auxiliary import BasePredictionWriter
from engineering import MisconfigurationError, Trainer
from tests.auxiliary import prediction_writer_script as script
from tests.e2e.test_ddp import Process, clean_environment, free_port, run_to_end
from tests.helpers import QUIET

EVERY_INDEX = list(range(script.SAMPLES))
BATCHES = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14], [15, 16, 17], [18, 19]]


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("interval", ["batch", "epoch", "batch_and_epoch"])
def test_files_per_batch_and_per_epoch_in_one_process(tmp_path, interval):
    script.main(tmp_path, interval, devices=1)
    batch_files = sorted(tmp_path.glob("batch-*.pt"), key=lambda path: int(path.stem.split("-")[2]))
    epoch_files = list(tmp_path.glob("epoch-*.pt"))
    if interval == "epoch":
        assert batch_files == []
    else:
        assert [path.name for path in batch_files] == [f"batch-0-{index}.pt" for index in range(7)]
        for path, indices in zip(batch_files, BATCHES):
            written = load(path)
            assert written["indices"] == indices
            assert torch.equal(written["prediction"], 2 * torch.tensor(indices, dtype=torch.float32).unsqueeze(1))
    if interval == "batch":
        assert epoch_files == []
    else:
        assert [path.name for path in epoch_files] == ["epoch-0.pt"]
        written = load(epoch_files[0])
        assert written["indices"] == [BATCHES]  # one list of batch indices per dataloader
        assert torch.equal(torch.cat(written["predictions"]).squeeze(1), 2 * torch.arange(20.0))


@pytest.mark.slow
def test_two_ddp_ranks_each_write_their_shard(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               script.__file__, str(out), "batch_and_epoch", "2"]
    run_to_end([Process(command, clean_environment(), tmp_path / "logs", "torchrun")], timeout=120)
    for rank in (0, 1):
        shard = EVERY_INDEX[rank::2]  # DistributedSampler without shuffling: every other sample
        batches = [shard[start:start + 3] for start in range(0, len(shard), 3)]
        for batch_idx, indices in enumerate(batches):
            written = load(out / f"batch-{rank}-{batch_idx}.pt")
            assert written["indices"] == indices
            assert torch.equal(written["prediction"].squeeze(1), 2 * torch.tensor(indices, dtype=torch.float32))
        assert not (out / f"batch-{rank}-{len(batches)}.pt").exists()
        epoch = load(out / f"epoch-{rank}.pt")
        assert epoch["indices"] == [batches]
        assert torch.equal(torch.cat(epoch["predictions"]).squeeze(1), 2 * torch.tensor(shard, dtype=torch.float32))


class Writer(BasePredictionWriter):
    def __init__(self) -> None:
        super().__init__("batch_and_epoch")
        self.batches, self.epochs = [], []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.batches.append((dataloader_idx, batch_idx, batch_indices))

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        self.epochs.append((len(predictions), batch_indices))


def test_several_dataloaders_and_a_shuffling_one(tmp_path):
    dataset = TensorDataset(torch.arange(4, dtype=torch.float32).unsqueeze(1))
    writer = Writer()
    trainer = Trainer(callbacks=[writer], default_root_dir=tmp_path, **QUIET)
    loaders = [DataLoader(dataset, batch_size=2), DataLoader(dataset, batch_size=3, shuffle=True)]
    with pytest.warns(RuntimeWarning, match="shuffle=False"):
        trainer.predict(script.Doubler(), loaders)
    assert writer.batches == [(0, 0, [0, 1]), (0, 1, [2, 3]), (1, 0, None), (1, 1, None)]
    assert writer.epochs == [(2, [[[0, 1], [2, 3]], [None, None]])]  # a list of predictions per dataloader


def test_a_bad_interval_and_a_missing_writer_are_explained(tmp_path):
    with pytest.raises(MisconfigurationError, match="write_interval"):
        BasePredictionWriter("step")
    trainer = Trainer(callbacks=[BasePredictionWriter("epoch")], default_root_dir=tmp_path, **QUIET)
    with pytest.raises(NotImplementedError, match="must define write_on_epoch_end"):
        trainer.predict(script.Doubler(), DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1))
