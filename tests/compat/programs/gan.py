"""A GAN with two optimizers under manual optimization, as in Lightning's basic GAN example."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning.pytorch import LightningModule, Trainer, seed_everything

from compat_data import curve, save_outcome


class GAN(LightningModule):
    def __init__(self, latent: int = 4):
        super().__init__()
        self.automatic_optimization = False
        self.latent = latent
        self.generator = torch.nn.Sequential(torch.nn.Linear(latent, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        self.discriminator = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.LeakyReLU(0.2),
                                                 torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        real = torch.cat([x, y], dim=1)
        g_opt, d_opt = self.optimizers()
        noise = torch.randn(real.shape[0], self.latent)

        self.toggle_optimizer(g_opt)
        fake = self.generator(noise)
        g_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake), torch.ones(real.shape[0], 1))
        self.manual_backward(g_loss)
        g_opt.step()
        g_opt.zero_grad()
        self.untoggle_optimizer(g_opt)

        self.toggle_optimizer(d_opt)
        real_loss = F.binary_cross_entropy_with_logits(self.discriminator(real), torch.ones(real.shape[0], 1))
        fake_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()),
                                                       torch.zeros(real.shape[0], 1))
        d_loss = (real_loss + fake_loss) / 2
        self.manual_backward(d_loss)
        d_opt.step()
        d_opt.zero_grad()
        self.untoggle_optimizer(d_opt)
        self.log_dict({"g_loss": g_loss, "d_loss": d_loss}, prog_bar=True)

    def configure_optimizers(self):
        g_opt = torch.optim.Adam(self.generator.parameters(), lr=2e-3, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999))
        return [g_opt, d_opt], []


def main():
    seed_everything(3)
    model = GAN()
    trainer = Trainer(max_epochs=2, deterministic=True, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(curve(), batch_size=16, shuffle=True))
    save_outcome(model, trainer.callback_metrics, {"global_step": trainer.global_step})


if __name__ == "__main__":
    main()
