"""Two validation dataloaders: metrics per dataloader, and a sanity check before training."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import LightningModule, Trainer, seed_everything

from compat_data import blobs, save_outcome


class TwoSets(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.Adagrad(self.parameters(), lr=0.05)


def main():
    seed_everything(12)
    model = TwoSets()
    trainer = Trainer(max_epochs=2, deterministic=True, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    val = [DataLoader(blobs(samples=24, seed=1), batch_size=8, shuffle=True), DataLoader(blobs(samples=16, seed=2))]
    trainer.fit(model, DataLoader(blobs(), batch_size=16, shuffle=True), val)
    save_outcome(model, trainer.callback_metrics)


if __name__ == "__main__":
    main()
