"""Writing a callback: a journal of training that also ends it once a goal is reached.

    python examples/custom_callback.py                                          # seconds
    python examples/custom_callback.py --max_epochs 2 --limit_train_batches 2   # a smoke run

A callback is a subscriber of the Trainer's events: it overrides the hooks it needs, with Lightning's
names and signatures, and only those are connected. ``EpochJournal`` uses four hooks and reads the
Trainer's public state (``current_epoch``, ``global_step``, ``callback_metrics``); it changes training
only through ``trainer.should_stop``. Its journal is part of every checkpoint (``state_dict``), so a
resumed run keeps the epochs it already wrote down.

Pass it to one Trainer with ``Trainer(callbacks=[EpochJournal(...)])``, as below. To put it on every
Trainer without touching the training script, hand the discovery door a factory (docs/auxiliary.md):

    PYTHONPATH=examples TRIBUS_CALLBACKS=custom_callback:journal python examples/gan.py

or, for every job in an environment, register the factory as an entry point of an installed package:

    [project.entry-points."tribus.callbacks"]
    journal = "my_package.callbacks:journal"
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback
from engineering import Trainer, seed_everything
from research import LightningModule


class EpochJournal(Callback):
    """Writes down each epoch's duration, step count and metrics; prints them when fit ends.

    With a ``target``, it also stops training after the first epoch whose ``monitor`` reaches it.
    """

    def __init__(self, monitor: str = "val_acc", target: float | None = None) -> None:
        self.monitor, self.target = monitor, target
        self.entries: list[dict[str, float]] = []
        self.stop_reason = ""
        self._epoch_started = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        # The epoch's validation has run by now, so its metrics are in callback_metrics.
        metrics = {name: value.item() for name, value in trainer.callback_metrics.items()}
        self.entries.append({"epoch": trainer.current_epoch, "global_step": trainer.global_step,
                             "seconds": time.perf_counter() - self._epoch_started, **metrics})
        reached = metrics.get(self.monitor)
        if self.target is not None and reached is not None and reached >= self.target:
            self.stop_reason = f"{self.monitor} {reached:.4f} >= {self.target} at epoch {trainer.current_epoch}"
            trainer.should_stop = True  # the one way a subscriber steers: public trainer state

    def on_fit_end(self, trainer, pl_module):
        if not trainer.is_global_zero:  # with several processes, one journal is printed
            return
        columns = list(dict.fromkeys(name for entry in self.entries for name in entry))
        print("epoch journal:")
        print("  ".join(f"{name:>12}" for name in columns))
        for entry in self.entries:
            print("  ".join(f"{entry.get(name, float('nan')):>12.4g}" for name in columns))
        if self.stop_reason:
            print(f"stopped early: {self.stop_reason}")

    def on_exception(self, trainer, pl_module, exception):
        print(f"training failed after {len(self.entries)} epochs: {exception!r}")

    def state_dict(self) -> dict:
        return {"entries": self.entries, "stop_reason": self.stop_reason}

    def load_state_dict(self, state_dict: dict) -> None:
        self.entries, self.stop_reason = state_dict["entries"], state_dict["stop_reason"]


def journal(trainer: Trainer) -> EpochJournal:
    """The factory the discovery door calls (TRIBUS_CALLBACKS or the entry point): a journal for every Trainer."""
    return EpochJournal()


class BlobClassifier(LightningModule):
    def __init__(self, classes: int = 4, hidden: int = 32, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def training_step(self, batch, batch_idx):
        points, labels = batch
        loss = F.cross_entropy(self.network(points), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        points, labels = batch
        self.log("val_acc", (self.network(points).argmax(dim=1) == labels).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def blobs_dataset(count: int, classes: int, seed: int) -> TensorDataset:
    """``count`` points around ``classes`` centres spread on a circle, labelled by their centre."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (count,), generator=generator)
    angles = 2 * torch.pi * labels / classes
    centres = 2 * torch.stack([angles.cos(), angles.sin()], dim=1)
    return TensorDataset(centres + 0.6 * torch.randn(count, 2, generator=generator), labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_epochs", type=int, default=30)
    parser.add_argument("--limit_train_batches", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=0.98, help="stop once val_acc reaches this")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    train, validation = blobs_dataset(2048, 4, seed=args.seed), blobs_dataset(1024, 4, seed=args.seed + 1)
    journal_callback = EpochJournal(monitor="val_acc", target=args.target)
    limit = int(args.limit_train_batches) if args.limit_train_batches > 1 else args.limit_train_batches
    trainer = Trainer(max_epochs=args.max_epochs, limit_train_batches=limit, callbacks=[journal_callback],
                      enable_checkpointing=False, enable_progress_bar=False)
    train_loader = DataLoader(train, batch_size=64, shuffle=True)
    trainer.fit(BlobClassifier(), train_loader, DataLoader(validation, batch_size=1024))
    print(f"epochs recorded: {len(journal_callback.entries)}")


if __name__ == "__main__":
    main()
