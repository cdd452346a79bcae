"""A classifier that logs torchmetrics objects (step and epoch accuracy, a validation F1), as most Lightning code does."""

import torch
import torch.nn.functional as F
import torchmetrics
from torch.utils.data import DataLoader

from lightning.pytorch import LightningModule, Trainer, seed_everything

from compat_data import blobs, save_outcome


class Classifier(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
        self.val_f1 = torchmetrics.F1Score(task="multiclass", num_classes=3, average="macro")

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits.argmax(1), y)
        self.log("train_acc", self.train_acc, on_step=True, on_epoch=True)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x)
        self.val_acc.update(logits.argmax(1), y)
        self.val_f1.update(logits.argmax(1), y)
        self.log("val_acc", self.val_acc)
        self.log("val_f1", self.val_f1, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def main():
    seed_everything(11)
    data = blobs(samples=96)
    train, val = torch.utils.data.random_split(data, [72, 24], generator=torch.Generator().manual_seed(1))
    model = Classifier()
    trainer = Trainer(max_epochs=3, deterministic=True, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(model, DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=8))
    save_outcome(model, trainer.callback_metrics, {"logged": {key: float(value) for key, value in
                                                             sorted(trainer.logged_metrics.items())}})


if __name__ == "__main__":
    main()
