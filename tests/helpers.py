"""Small models and data shared by tests."""

from __future__ import annotations

import functools
import io
import os
import subprocess
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from research import LightningModule

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def lightning_python() -> str | None:
    """A Python with Lightning 2.6.6 to compare against (``TRIBUS_LIGHTNING_PYTHON``, else ``make bench``'s
    ``.venv-bench``), or None when there is none."""
    candidate = os.environ.get("TRIBUS_LIGHTNING_PYTHON") or str(ROOT / ".venv-bench" / "bin" / "python")
    if not Path(candidate).exists():
        return None
    check = subprocess.run([candidate, "-c", "import lightning; assert lightning.__version__ == '2.6.6'"],
                           capture_output=True, timeout=120)
    return candidate if check.returncode == 0 else None


class Terminal(io.StringIO):
    """What tqdm writes to a terminal, kept; says it is a terminal."""

    def isatty(self) -> bool:
        return True


QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


def tiny_loader(samples: int = 64, batch_size: int = 16, seed: int = 0, shuffle: bool = False) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(samples, 32, generator=generator)
    targets = torch.randint(0, 2, (samples,), generator=generator)
    return DataLoader(TensorDataset(features, targets), batch_size=batch_size, shuffle=shuffle)


def repeating_loader() -> DataLoader:
    """Four batches that are one and the same: which of them a resumed epoch reads makes no difference."""
    once = tiny_loader(samples=16).dataset
    return DataLoader(ConcatDataset([once] * 4), batch_size=16)


def regression_dataset(batches: int, batch_size: int = 4) -> TensorDataset:
    """6 features → 1 target, scaled so that gradient clipping bites; the same every call."""
    generator = torch.Generator().manual_seed(1)
    inputs = 3 * torch.randn(batches * batch_size, 6, generator=generator)
    targets = torch.randn(batches * batch_size, 1, generator=generator)
    return TensorDataset(inputs, targets)


class TinyModule(LightningModule):
    """Linear(32, 2), cross-entropy, SGD(lr); logs train_loss and val_loss."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y), prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
