"""The training step a newcomer follows: from ``Trainer.fit`` to ``training_step`` and to the backward pass on the
default path, few frames of the project's own code, in few files."""

from __future__ import annotations

import traceback
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Trainer
from research import LightningModule

PROJECT = Path(__file__).resolve().parents[2]
PACKAGES = tuple(str(PROJECT / package) + "/" for package in ("research", "engineering", "auxiliary"))


def project_frames() -> list[tuple[str, str]]:
    """(file, function) of each frame of the three packages on the current stack, outermost first."""
    return [(frame.filename, frame.name) for frame in traceback.extract_stack() if frame.filename.startswith(PACKAGES)]


class Recording(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.stacks: dict[str, list[tuple[str, str]]] = {}

    def training_step(self, batch, batch_idx):
        self.stacks.setdefault("training_step", project_frames())
        loss = self.layer(batch[0]).pow(2).mean()
        loss.register_hook(self.record_backward)
        return loss

    def record_backward(self, grad: torch.Tensor) -> None:
        self.stacks.setdefault("backward", project_frames())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_training_step_and_backward_are_at_most_six_project_frames_in_three_files_from_fit(tmp_path):
    model = Recording()
    loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    Trainer(max_epochs=1, default_root_dir=tmp_path).fit(model, loader)

    for where in ("training_step", "backward"):
        frames = model.stacks[where]
        assert frames[0][1] == "fit" and frames[0][0].endswith("engineering/trainer.py"), frames
        assert len(frames) <= 6, f"{where}: {len(frames)} frames: {frames}"
        files = {file for file, _ in frames}
        assert len(files) <= 3, f"{where}: {sorted(files)}"
