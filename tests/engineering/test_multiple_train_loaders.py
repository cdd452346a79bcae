"""Several training loaders: a dict, list or nested collection is read as Lightning reads it (max_size_cycle), a
user's own CombinedLoader keeps its mode, and a run stopped mid-epoch resumes to the same bits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from engineering import Callback, ModelCheckpoint, Trainer, seed_everything
from engineering.checkpointing.checkpoint import load_checkpoint
from engineering.utilities import CombinedLoader
from research import LightningModule
from tests.helpers import QUIET

FLAGS = {**QUIET, "num_sanity_val_steps": 0}


class Recorded(Dataset):
    """``length`` samples of 4 features; remembers which indices were read."""

    def __init__(self, length: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(length, 4, generator=generator)
        self.y = torch.randn(length, 1, generator=generator)
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        self.read.append(index)
        return self.x[index], self.y[index]


class TwoHeads(LightningModule):
    """One loss per loader of a dict batch; dropout draws random numbers every step."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
        self.batches: list = []

    def training_step(self, batch, batch_idx):
        self.batches.append((batch_idx, batch))
        (xa, ya), (xb, yb) = batch["a"], batch["b"]
        return F.mse_loss(self.net(xa), ya) + F.mse_loss(self.net(xb), yb)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def shuffled(dataset: Dataset, batch_size: int, workers: int = 0) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)


def test_a_dict_of_loaders_is_read_as_max_size_cycle(tmp_path):
    model = TwoHeads()
    loaders = {"a": DataLoader(torch.arange(6.0), batch_size=4), "b": DataLoader(torch.arange(15.0), batch_size=5)}
    seen = []

    class Sees(TwoHeads):
        def training_step(self, batch, batch_idx):
            seen.append((batch_idx, batch["a"].tolist(), batch["b"].tolist()))
            return self.net[0].weight.sum() * 0

    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **FLAGS)
    trainer.fit(Sees(), loaders)
    assert seen == [
        (0, [0, 1, 2, 3], [0, 1, 2, 3, 4]),
        (1, [4, 5], [5, 6, 7, 8, 9]),
        (2, [0, 1, 2, 3], [10, 11, 12, 13, 14]),
    ]
    assert trainer.num_training_batches == 3
    assert trainer.train_dataloader is loaders or trainer.train_dataloader == loaders
    del model


def hand_written_epochs(model: TwoHeads, loaders: dict[str, DataLoader], epochs: int) -> None:
    """What a plain loop does with two loaders: the shorter one starts over when it ends."""
    optimizer = model.configure_optimizers()
    longest = max(len(loader) for loader in loaders.values())
    for _ in range(epochs):
        iterators = {key: iter(loader) for key, loader in loaders.items()}
        for _ in range(longest):
            batch = {}
            for key, loader in loaders.items():
                try:
                    batch[key] = next(iterators[key])
                except StopIteration:
                    iterators[key] = iter(loader)
                    batch[key] = next(iterators[key])
            (xa, ya), (xb, yb) = batch["a"], batch["b"]
            loss = F.mse_loss(model.net(xa), ya) + F.mse_loss(model.net(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def test_training_on_a_dict_of_shuffled_loaders_matches_a_hand_written_loop(tmp_path):
    seed_everything(3)
    model = TwoHeads()
    Trainer(max_epochs=2, default_root_dir=tmp_path, **FLAGS).fit(
        model, {"a": shuffled(Recorded(10, 1), 3), "b": shuffled(Recorded(24, 2), 4)})

    seed_everything(3)
    by_hand = TwoHeads()
    by_hand.train()
    hand_written_epochs(by_hand, {"a": shuffled(Recorded(10, 1), 3), "b": shuffled(Recorded(24, 2), 4)}, epochs=2)
    for name, value in by_hand.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


class Interrupted(Exception):
    pass


class InterruptAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Interrupted


def train(root: Path, ckpt_path=None, extra=(), workers: int = 0) -> tuple[TwoHeads, Trainer, dict[str, Recorded],
                                                                       torch.Tensor]:
    """3 epochs over a (10 samples, batch 3: 4 batches) and b (24 samples, batch 4: 6 batches), a step's
    checkpoint after every batch."""
    seed_everything(0)
    data = {"a": Recorded(10, 1), "b": Recorded(24, 2)}
    model = TwoHeads()
    callbacks = [ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_train_steps=1), *extra]
    trainer = Trainer(max_epochs=3, callbacks=callbacks, default_root_dir=root,
                      **{**FLAGS, "enable_checkpointing": True})
    try:
        trainer.fit(model, {"a": shuffled(data["a"], 3, workers), "b": shuffled(data["b"], 4, workers)},
                    ckpt_path=ckpt_path)
    except Interrupted:
        pass
    return model, trainer, data, torch.get_rng_state()


@pytest.mark.parametrize(
    "interrupt_at, resumes_at", [(3, (0, 2)), (5, (0, 4)), (6, (0, 5)), (7, (1, 0)), (17, (2, 4))],
    ids=["before-a-starts-over", "a-read-to-its-end", "after-a-started-over", "epoch-boundary", "later-epoch"],
)
def test_a_run_stopped_mid_epoch_resumes_bitwise_with_several_shuffled_loaders(tmp_path, interrupt_at, resumes_at):
    straight_model, straight_trainer, straight_data, straight_rng = train(tmp_path / "straight")
    train(tmp_path, extra=[InterruptAt(interrupt_at)])
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert (last["progress"]["epoch"], last["progress"]["batch_idx"]) == resumes_at

    model, trainer, data, rng = train(tmp_path, ckpt_path="last")
    for name, value in straight_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert trainer.progress == straight_trainer.progress
    assert torch.equal(rng, straight_rng)
    # The resumed run loads only what the uninterrupted one loaded after the checkpoint.
    for key in ("a", "b"):
        assert data[key].read == straight_data[key].read[len(straight_data[key].read) - len(data[key].read):]
    if resumes_at == (0, 5):  # a had started over once: its second pass had read one batch of 3
        assert len(data["a"].read) == len(straight_data["a"].read) - 10 - 3


def test_with_loader_workers_a_resume_after_a_loader_started_over_is_bitwise_too(tmp_path):
    """With workers a loader draws its order inside iter(), not at its first batch."""
    straight_model, _, _, straight_rng = train(tmp_path / "straight", workers=1)
    train(tmp_path, extra=[InterruptAt(6)], workers=1)
    model, _, _, rng = train(tmp_path, ckpt_path="last", workers=1)
    for name, value in straight_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert torch.equal(rng, straight_rng)


def test_a_list_of_batches_stays_one_iterable_of_batches(tmp_path):
    seen = []

    class Sees(TwoHeads):
        def training_step(self, batch, batch_idx):
            seen.append(batch.tolist())
            return self.net[0].weight.sum() * 0

    Trainer(max_epochs=1, default_root_dir=tmp_path, **FLAGS).fit(Sees(), [torch.ones(2), torch.zeros(3)])
    assert seen == [[1.0, 1.0], [0.0, 0.0, 0.0]]


def test_a_users_combined_loader_keeps_its_mode_and_sets_the_epoch_length(tmp_path):
    seen = []

    class Sees(TwoHeads):
        def training_step(self, batch, batch_idx):
            seen.append([part.tolist() for part in batch])
            return self.net[0].weight.sum() * 0

    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **FLAGS)
    trainer.fit(Sees(), CombinedLoader([DataLoader(torch.arange(4.0), batch_size=2),
                                        DataLoader(torch.arange(9.0), batch_size=3)], mode="min_size"))
    assert trainer.num_training_batches == 2
    assert seen == [[[0.0, 1.0], [0.0, 1.0, 2.0]], [[2.0, 3.0], [3.0, 4.0, 5.0]]]


def test_a_mid_epoch_checkpoint_without_pass_records_reads_past_the_trained_batches(tmp_path):
    train(tmp_path, extra=[InterruptAt(6)])  # the last checkpoint: epoch 0, batch 5
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    del last["train_loader_passes"]  # as a checkpoint Lightning wrote would be
    torch.save(last, tmp_path / "lightning.ckpt")
    model, trainer, data, _ = train(tmp_path, ckpt_path=tmp_path / "lightning.ckpt")
    assert trainer.progress.epoch == 3 and trainer.global_step == 18
    # Every epoch reads a's 10 samples and two batches of 3 of its second pass, the resumed one too: it read its
    # 6 batches from the start and trained on the last.
    assert len(data["a"].read) == 3 * (10 + 2 * 3)
