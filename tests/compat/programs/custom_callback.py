"""A callback that reads the logged metrics each epoch and logs its own, beside schedulers and hooks."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from compat_data import blobs, save_outcome


class GradientNorm(Callback):
    """Logs the gradient norm before each optimizer step, and the best training loss so far each epoch."""

    def __init__(self):
        self.best = float("inf")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        norms = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
        pl_module.log("grad_norm", torch.stack(norms).norm())

    def on_train_epoch_end(self, trainer, pl_module):
        self.best = min(self.best, float(trainer.callback_metrics["train_loss_epoch"]))
        pl_module.log("best_train_loss", self.best)


class Model(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def on_train_epoch_end(self):
        self.log("weight_norm", self.net[0].weight.norm())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, nesterov=True, momentum=0.9)


def main():
    seed_everything(21)
    model = Model()
    trainer = Trainer(max_epochs=3, callbacks=[GradientNorm()], deterministic=True, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(blobs(), batch_size=8, shuffle=True))
    save_outcome(model, trainer.callback_metrics)


if __name__ == "__main__":
    main()
