"""ReduceLROnPlateau following a validation metric, validation twice an epoch."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import LightningModule, Trainer, seed_everything

from compat_data import curve, save_outcome


class Plateau(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_mse", F.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_mse"}}


def main():
    seed_everything(4)
    model = Plateau()
    trainer = Trainer(max_epochs=4, val_check_interval=0.5, deterministic=True, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(curve(), batch_size=8, shuffle=True), DataLoader(curve(seed=9), batch_size=16))
    save_outcome(model, trainer.callback_metrics, {"lr": trainer.optimizers[0].param_groups[0]["lr"]})


if __name__ == "__main__":
    main()
