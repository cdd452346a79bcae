"""Train two epochs, save a checkpoint, and resume from it to four in a new Trainer.

The data is read in order: Lightning does not put the random state back on resume (tribus does, for an exact
resume), so a shuffled resume would draw differently in the two frameworks by design."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import LightningModule, Trainer, seed_everything

from compat_data import blobs, save_outcome


class Model(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=0.01)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


def trainer(max_epochs: int) -> Trainer:
    return Trainer(max_epochs=max_epochs, deterministic=True, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)


def main():
    seed_everything(9)
    first = trainer(2)
    first.fit(Model(), DataLoader(blobs(), batch_size=16))
    first.save_checkpoint("after-two.ckpt")
    model = Model()
    second = trainer(4)
    second.fit(model, DataLoader(blobs(), batch_size=16), ckpt_path="after-two.ckpt")
    save_outcome(model, second.callback_metrics, {"global_step": second.global_step})


if __name__ == "__main__":
    main()
