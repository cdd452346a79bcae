"""EarlyStopping and ModelCheckpoint on a validation metric: the run stops, and the best checkpoint is known."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from compat_data import curve, save_outcome


class Overfitting(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(1, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self.net(x), y) + 0.02 * self.current_epoch)  # worsens after a while

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def main():
    seed_everything(2)
    model = Overfitting()
    checkpoint = ModelCheckpoint(monitor="val_loss", save_top_k=2)
    trainer = Trainer(max_epochs=30, callbacks=[EarlyStopping("val_loss", patience=2), checkpoint],
                      deterministic=True, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(curve(seed=4), batch_size=16, shuffle=True), DataLoader(curve(seed=5), batch_size=32))
    save_outcome(model, trainer.callback_metrics, {
        "stopped_epoch": trainer.current_epoch,
        "best_model_score": float(checkpoint.best_model_score),
        "best_model": checkpoint.best_model_path.rsplit("/", 1)[-1],
    })


if __name__ == "__main__":
    main()
