"""A dict of shuffled training loaders of different lengths (max_size_cycle), then a user's min_size CombinedLoader."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.utilities import CombinedLoader

from compat_data import blobs, curve, save_outcome


class TwoTasks(LightningModule):
    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1))
        self.classify = torch.nn.Linear(16, 3)
        self.regress = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        (x, y), (t, s) = batch["blobs"], batch["curve"]
        self.seen.append((batch_idx, len(x), len(t)))
        classification = F.cross_entropy(self.classify(self.trunk(x)), y)
        regression = F.mse_loss(self.regress(t), s)
        self.log("classification", classification, on_epoch=True)
        self.log("regression", regression, on_step=False, on_epoch=True)
        return classification + regression

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def loaders():
    return {"blobs": DataLoader(blobs(samples=40), batch_size=16, shuffle=True),
            "curve": DataLoader(curve(samples=64), batch_size=10, shuffle=True)}


def main():
    seed_everything(21)
    model = TwoTasks()
    flags = dict(deterministic=True, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                 enable_model_summary=False)
    trainer = Trainer(max_epochs=3, **flags)
    trainer.fit(model, loaders())
    cycled = (trainer.num_training_batches, list(model.seen))
    model.seen.clear()
    trainer = Trainer(max_epochs=2, **flags)
    trainer.fit(model, CombinedLoader(loaders(), mode="min_size"))
    save_outcome(model, trainer.callback_metrics, {
        "cycled": cycled, "min_size": (trainer.num_training_batches, model.seen),
        "global_step": trainer.global_step,
    })


if __name__ == "__main__":
    main()
