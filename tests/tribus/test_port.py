"""``python -m tribus.port``: a Lightning program runs on tribus with its imports unchanged, and only when asked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LIGHTNING_SCRIPT = '''
import sys

import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning as L
import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities import rank_zero_info
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.model_helpers import get_torchvision_model


class Classifier(pl.LightningModule):
    def __init__(self, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(4, 3)
        self.val_accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=3)

    def training_step(self, batch):
        x, y = batch
        return nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_accuracy(self.layer(x), y)
        self.log("val_acc", self.val_accuracy, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


if __name__ == "__main__":
    pl.cli_lightning_logo()
    L.seed_everything(0)
    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 3, (32,)))
    trainer = pl.Trainer(
        max_epochs=2, logger=CSVLogger(sys.argv[1]), default_root_dir=sys.argv[1], enable_progress_bar=False,
        callbacks=[EarlyStopping("val_acc", mode="max", patience=5), ModelCheckpoint(monitor="val_acc", mode="max")],
    )
    trainer.fit(Classifier(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    rank_zero_info("trained on %s", type(trainer).__module__)
    assert L.LightningModule is pl.LightningModule and L.pytorch is pl
    print("val_acc", round(float(trainer.callback_metrics["val_acc"]), 4), "epochs", trainer.current_epoch)
'''


def run_port(tmp_path: Path, script: str, *arguments: str) -> subprocess.CompletedProcess:
    path = tmp_path / "lightning_program.py"
    path.write_text(textwrap.dedent(script))
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tribus.port", str(path), *arguments], capture_output=True,
                          text=True, env=environment, cwd=tmp_path, timeout=300)


def test_a_lightning_program_runs_on_tribus_unchanged(tmp_path):
    result = run_port(tmp_path, LIGHTNING_SCRIPT, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "tribus" in result.stdout  # the logo's stand-in
    assert "epochs 2" in result.stdout and "val_acc" in result.stdout
    assert "trained on engineering.trainer" in result.stderr
    assert list(tmp_path.rglob("metrics.csv")) and list(tmp_path.rglob("*.ckpt"))


def test_a_name_tribus_lacks_is_an_import_error_naming_it(tmp_path):
    result = run_port(tmp_path, "from lightning.pytorch.callbacks import RichProgressBar\n")
    assert result.returncode == 1
    assert "ImportError: tribus has no counterpart of lightning.pytorch.callbacks.RichProgressBar" in result.stderr
    result = run_port(tmp_path, "import lightning.fabric\n")
    assert "ModuleNotFoundError: tribus has no counterpart of the module lightning.fabric" in result.stderr


def test_without_the_shim_lightning_names_are_not_tribus():
    code = textwrap.dedent("""
        import importlib.util, sys
        import engineering, research, auxiliary
        assert not any(type(finder).__name__ == "LightningFinder" for finder in sys.meta_path)
        spec = importlib.util.find_spec("pytorch_lightning")
        assert spec is None or "tribus" not in repr(spec.loader), spec
    """)
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_usage_without_a_script(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tribus.port"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "usage: python -m tribus.port script.py" in result.stdout


def test_the_api_names_lightning_programs_import_resolve_to_tribus(tmp_path):
    result = run_port(tmp_path, """
        from lightning.pytorch.callbacks import BasePredictionWriter
        from lightning.pytorch.accelerators import Accelerator, CPUAccelerator, CUDAAccelerator
        import auxiliary, engineering
        assert BasePredictionWriter is auxiliary.BasePredictionWriter
        assert (Accelerator, CPUAccelerator, CUDAAccelerator) == (engineering.Accelerator, engineering.CPUAccelerator,
                                                                  engineering.CUDAAccelerator)
        print("resolved")
    """)
    assert result.returncode == 0, result.stderr
    assert "resolved" in result.stdout
