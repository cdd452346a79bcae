"""A datamodule made by LightningDataModule.from_datasets (shuffled training data), then fit and test."""

import torch
import torch.nn.functional as F
from torch.utils.data import random_split

from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything

from compat_data import blobs, save_outcome


class Model(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.layer(x), y)
        self.log("train_loss", loss, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.layer(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self.layer(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


def main():
    seed_everything(3)
    train, val, test = random_split(blobs(samples=120), [80, 20, 20], generator=torch.Generator().manual_seed(2))
    data = LightningDataModule.from_datasets(train_dataset=train, val_dataset=val, test_dataset=test, batch_size=16)
    model = Model()
    trainer = Trainer(max_epochs=2, deterministic=True, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    results = trainer.test(model, datamodule=data, verbose=False)
    save_outcome(model, trainer.callback_metrics, {"test_results": results})


if __name__ == "__main__":
    main()
