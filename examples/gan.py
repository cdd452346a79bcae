"""A tiny GAN: two optimizers under manual optimization, learning to draw points on a circle.

    python examples/gan.py                                   # 30 epochs, well under a minute on CPU
    python examples/gan.py --max_epochs 1 --limit_train_batches 2   # a smoke run

The generator turns noise into 2-D points; the discriminator tells them from points on the unit circle.
configure_optimizers returns one optimizer per network, and training_step steps each in turn with
``self.optimizers()``, ``toggle_optimizer`` (so one network's loss leaves the other's gradients alone)
and ``manual_backward`` (which applies the precision's loss scaling). Both losses are logged; at the end
the script prints them and how far generated points lie from the circle.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Trainer, seed_everything
from research import LightningModule


def circle_points(count: int, noise: float = 0.02) -> torch.Tensor:
    """``count`` points spread over the unit circle, slightly blurred."""
    angles = 2 * math.pi * torch.rand(count)
    points = torch.stack([angles.cos(), angles.sin()], dim=1)
    return points + noise * torch.randn_like(points)


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
        nn.Linear(hidden, outputs),
    )


class CircleGAN(LightningModule):
    def __init__(self, latent_dim: int = 8, hidden: int = 64, lr: float = 2e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # two networks, two optimizers: training_step steps them itself
        self.generator = mlp(latent_dim, hidden, 2)
        self.discriminator = mlp(2, hidden, 1)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.generator(noise)

    def noise(self, count: int) -> torch.Tensor:
        return torch.randn(count, self.hparams.latent_dim, device=self.device)

    def training_step(self, batch, batch_idx):
        (real,) = batch
        generator_optimizer, discriminator_optimizer = self.optimizers()
        real_labels = torch.ones(len(real), 1, device=self.device)
        fake_labels = torch.zeros(len(real), 1, device=self.device)

        # The discriminator learns to tell real points from generated ones; detach() keeps the generator out.
        self.toggle_optimizer(discriminator_optimizer)
        fake = self(self.noise(len(real))).detach()
        discriminator_loss = (
            F.binary_cross_entropy_with_logits(self.discriminator(real), real_labels)
            + F.binary_cross_entropy_with_logits(self.discriminator(fake), fake_labels)
        ) / 2
        discriminator_optimizer.zero_grad()
        self.manual_backward(discriminator_loss)
        discriminator_optimizer.step()
        self.untoggle_optimizer(discriminator_optimizer)

        # The generator learns to make the discriminator call its points real; toggling freezes the discriminator.
        self.toggle_optimizer(generator_optimizer)
        fake = self(self.noise(len(real)))
        generator_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake), real_labels)
        generator_optimizer.zero_grad()
        self.manual_backward(generator_loss)
        generator_optimizer.step()
        self.untoggle_optimizer(generator_optimizer)

        self.log_dict({"generator_loss": generator_loss, "discriminator_loss": discriminator_loss}, prog_bar=True)

    def configure_optimizers(self):
        # beta1 = 0.5, the usual choice for GANs: less momentum carried across the two players' moves
        betas = (0.5, 0.999)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas),
        ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_epochs", type=int, default=30)
    parser.add_argument("--limit_train_batches", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    loader = DataLoader(TensorDataset(circle_points(args.samples)), batch_size=args.batch_size, shuffle=True)
    model = CircleGAN()
    limit = int(args.limit_train_batches) if args.limit_train_batches > 1 else args.limit_train_batches
    trainer = Trainer(max_epochs=args.max_epochs, limit_train_batches=limit, enable_checkpointing=False)
    trainer.fit(model, loader)

    metrics = trainer.callback_metrics
    print(f"generator_loss: {metrics['generator_loss'].item():.4f}")
    print(f"discriminator_loss: {metrics['discriminator_loss'].item():.4f}")
    with torch.no_grad():
        radii = model(model.noise(1000)).norm(dim=1)
    print(f"generated points lie at radius {radii.mean().item():.3f} ± {radii.std().item():.3f} (the circle: 1)")


if __name__ == "__main__":
    main()
