"""Train, then predict with a custom predict_step over a loader, as a predict-and-write script does."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import LightningModule, Trainer, seed_everything

from compat_data import blobs, save_outcome


class Scorer(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        x, _ = batch
        return torch.softmax(self.net(x), dim=1)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.02, weight_decay=0.01)


def main():
    seed_everything(8)
    model = Scorer()
    trainer = Trainer(max_epochs=2, deterministic=True, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(blobs(), batch_size=16, shuffle=True))
    predictions = trainer.predict(model, DataLoader(blobs(samples=20, seed=9), batch_size=8))
    save_outcome(model, trainer.callback_metrics, {"predictions": torch.cat(predictions)})


if __name__ == "__main__":
    main()
