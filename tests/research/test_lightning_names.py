"""The LightningModule and LightningDataModule names Lightning programs use: ``on_gpu``, ``example_input_array``,
``to_torchscript``, ``to_onnx``, ``HyperparametersMixin``, ``hparams_initial``, ``save_hyperparameters`` in a base
class, ``from_datasets`` and the datamodule's state and hyperparameters in a run."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engineering import Logger, Trainer
from research import LightningDataModule, LightningModule
from research.hparams import HyperparametersMixin
from tests.helpers import QUIET, TinyModule, tiny_loader


class Exportable(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.example_input_array = torch.randn(3, 4)

    def forward(self, x):
        return torch.relu(self.layer(x))


def test_on_gpu_and_example_input_array():
    model = Exportable()
    assert model.on_gpu is False
    assert model.example_input_array.shape == (3, 4)
    assert TinyModule().example_input_array is None


def test_to_torchscript_scripts_or_traces_and_saves(tmp_path):
    model = Exportable()
    x = torch.randn(5, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in PyTorch itself
        scripted = model.to_torchscript(file_path=tmp_path / "scripted.pt")
        traced = model.to_torchscript(method="trace")
        loaded = torch.jit.load(str(tmp_path / "scripted.pt"))
    assert torch.equal(scripted(x), model(x)) and torch.equal(traced(x), model(x)) and torch.equal(loaded(x), model(x))
    assert model.training  # the mode is put back


def test_to_torchscript_names_what_tracing_needs():
    with pytest.raises(ValueError, match="example_input_array"):
        TinyModule().to_torchscript(method="trace")
    with pytest.raises(ValueError, match="only supports 'script' or 'trace'"):
        TinyModule().to_torchscript(method="compile")


def test_to_onnx_writes_a_model_onnx_can_check(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    path = tmp_path / "model.onnx"
    Exportable().to_onnx(path)
    onnx.checker.check_model(onnx.load(str(path)))


class Config(HyperparametersMixin):
    def __init__(self, width: int, depth: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()


def test_hyperparameters_mixin_records_any_class_and_keeps_the_initial_values():
    config = Config(8)
    assert config.hparams == {"width": 8, "depth": 2}
    config.hparams.width = 16
    assert config.hparams_initial == {"width": 8, "depth": 2}
    assert isinstance(LightningModule(), HyperparametersMixin) and isinstance(LightningDataModule(), HyperparametersMixin)


class Base(LightningModule):
    def __init__(self, lr: float, hidden: int = 4, **kwargs) -> None:
        super().__init__()
        self.save_hyperparameters()


class Child(Base):
    def __init__(self, dropout: float, *args, lr: float = 0.1, **kwargs) -> None:
        super().__init__(lr=lr * 2, hidden=8, **kwargs)


def test_save_hyperparameters_in_a_base_class_keeps_the_subclass_arguments_as_lightning_does():
    # Lightning 2.6.6 gives exactly this: the base's arguments, updated with every subclass __init__ up the
    # super() chain (the subclass's value wins), keyword arguments merged, *args dropped.
    model = Child(0.5, "ignored positional", lr=0.3, extra="kept")
    assert dict(model.hparams) == {"lr": 0.3, "hidden": 8, "extra": "kept", "dropout": 0.5}


def test_a_module_built_inside_another_modules_init_records_only_its_own_arguments():
    class Outer(LightningModule):
        def __init__(self, outer_only: int) -> None:
            super().__init__()
            self.inner = Base(lr=0.2)

    assert dict(Outer(1).inner.hparams) == {"lr": 0.2, "hidden": 4}


def test_from_datasets_builds_the_loaders():
    train = TensorDataset(torch.arange(10.0))
    val = [TensorDataset(torch.zeros(4)), TensorDataset(torch.ones(6))]

    class TakesBatchSize(LightningDataModule):
        def __init__(self, batch_size: int, note: str) -> None:
            super().__init__()
            self.batch_size, self.note = batch_size, note

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pin_memory without an accelerator
        datamodule = TakesBatchSize.from_datasets(train, val, batch_size=3, note="given")
        torch.manual_seed(0)
        first_batch = next(iter(datamodule.train_dataloader()))[0]
        val_loaders = datamodule.val_dataloader()
    assert (datamodule.batch_size, datamodule.note) == (3, "given")
    assert len(first_batch) == 3 and not torch.equal(first_batch, torch.arange(3.0))  # shuffled
    assert [len(loader) for loader in val_loaders] == [2, 2]
    assert all(isinstance(loader, DataLoader) and loader.batch_size == 3 for loader in val_loaders)
    with pytest.raises(NotImplementedError):
        datamodule.test_dataloader()


class RecordingLogger(Logger):
    def __init__(self) -> None:
        self.hyperparameters: list[dict] = []

    def log_metrics(self, metrics, step=None): ...

    def log_hyperparams(self, params):
        self.hyperparameters.append(dict(params))


class Numbers(LightningDataModule):
    def __init__(self, batch_size: int = 16, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batches_served = 0

    def train_dataloader(self):
        return tiny_loader(batch_size=self.hparams.batch_size)

    def state_dict(self):
        return {"batches_served": 7}

    def load_state_dict(self, state):
        self.batches_served = state["batches_served"]


def test_the_datamodules_hyperparameters_are_logged_with_the_models(tmp_path):
    logger = RecordingLogger()
    options = dict(QUIET, logger=logger, default_root_dir=tmp_path, max_epochs=1)
    Trainer(**options).fit(TinyModule(lr=0.1), datamodule=Numbers())
    assert logger.hyperparameters == [{"lr": 0.1, "batch_size": 16}]
    with pytest.raises(RuntimeError, match=r"the keys \['lr'\] are present in both"):
        Trainer(**options).fit(TinyModule(lr=0.5), datamodule=Numbers())


def test_the_datamodules_state_goes_into_the_checkpoint_and_comes_back_on_resume(tmp_path):
    trainer = Trainer(**dict(QUIET, default_root_dir=tmp_path, max_epochs=1))
    trainer.fit(TinyModule(), datamodule=Numbers())
    trainer.save_checkpoint(tmp_path / "saved.ckpt")
    assert torch.load(tmp_path / "saved.ckpt", weights_only=True)["Numbers"] == {"batches_served": 7}
    resumed = Numbers()
    Trainer(**dict(QUIET, default_root_dir=tmp_path, max_epochs=2)).fit(
        TinyModule(), datamodule=resumed, ckpt_path=tmp_path / "saved.ckpt"
    )
    assert resumed.batches_served == 7
