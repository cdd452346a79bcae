"""Finetuning: a frozen backbone for the first epoch, then unfrozen into a new parameter group with a lower rate."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from compat_data import blobs, save_outcome


class Unfreeze(Callback):
    """At the start of epoch ``at``, train the backbone too, at a tenth of the head's rate."""

    def __init__(self, at: int = 1):
        self.at = at

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            for parameter in pl_module.backbone.parameters():
                parameter.requires_grad_(True)
            optimizer = trainer.optimizers[0]
            optimizer.add_param_group({"params": list(pl_module.backbone.parameters()),
                                       "lr": optimizer.param_groups[0]["lr"] / 10})


class Finetuned(LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh())
        self.head = torch.nn.Linear(32, 3)
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.head(self.backbone(x)), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.head.parameters(), lr=0.1, momentum=0.9)


def main():
    seed_everything(11)
    model = Finetuned()
    trainer = Trainer(max_epochs=3, callbacks=[Unfreeze()], deterministic=True, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(blobs(), batch_size=12, shuffle=True))
    save_outcome(model, trainer.callback_metrics)


if __name__ == "__main__":
    main()
