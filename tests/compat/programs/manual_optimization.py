"""Manual optimization with gradient clipping and a scheduler stepped by hand every other batch."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import LightningModule, Trainer, seed_everything

from compat_data import curve, save_outcome


class Manual(LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=0.3, gradient_clip_algorithm="norm")
        optimizer.step()
        if batch_idx % 2 == 1:
            self.lr_schedulers().step()
        self.log("loss", loss)

    def configure_optimizers(self):
        optimizer = torch.optim.RMSprop(self.parameters(), lr=0.01)
        return [optimizer], [torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.95)]


def main():
    seed_everything(6)
    model = Manual()
    trainer = Trainer(max_epochs=2, deterministic=True, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(curve(), batch_size=8, shuffle=True))
    save_outcome(model, trainer.callback_metrics, {"global_step": trainer.global_step})


if __name__ == "__main__":
    main()
