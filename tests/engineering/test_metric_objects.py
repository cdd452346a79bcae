"""torchmetrics objects in ``self.log``: the forward value per step, ``compute()`` per epoch, ``reset()`` after,
checked against accuracies computed by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torchmetrics = pytest.importorskip("torchmetrics")

from engineering import Callback, Logger, MisconfigurationError, Trainer  # noqa: E402
from research import LightningModule  # noqa: E402

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
             num_sanity_val_steps=0)

# 10 samples of 3 classes; the model's predictions are fixed (lr 0), so every accuracy is known by hand.
FEATURES = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
TARGETS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


def loader() -> DataLoader:
    return DataLoader(TensorDataset(FEATURES, TARGETS), batch_size=4)


class Classifier(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(4, 3)
        self.train_accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=3)
        self.val_accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=3)
        self.step_values: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x)
        self.step_values.append(float(self.train_accuracy(logits, y)))
        self.log("train_acc", self.train_accuracy, on_step=True, on_epoch=True)
        return nn.functional.cross_entropy(logits, y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_accuracy(self.layer(x), y)
        self.log("val_acc", self.val_accuracy)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class RecordingLogger(Logger):
    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, params):
        pass


def hand_accuracy(model: Classifier, start: int = 0, stop: int = 10) -> float:
    with torch.no_grad():
        predictions = model.layer(FEATURES[start:stop]).argmax(dim=1)
    return (predictions == TARGETS[start:stop]).float().mean().item()


def test_a_metric_logs_its_batch_value_per_step_and_its_epoch_value_at_the_end(tmp_path):
    logger = RecordingLogger()
    model = Classifier()
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=1, logger=logger, log_every_n_steps=1, **QUIET)
    trainer.fit(model, loader(), loader())

    batch_accuracies = [hand_accuracy(model, 0, 4), hand_accuracy(model, 4, 8), hand_accuracy(model, 8, 10)]
    step_logged = [metrics["train_acc_step"] for _, metrics in logger.calls if "train_acc_step" in metrics]
    assert step_logged == pytest.approx(batch_accuracies)
    assert model.step_values == pytest.approx(batch_accuracies)
    # The epoch value is the accuracy of all predictions, not the mean of the batch accuracies.
    epoch_logged = [metrics["train_acc_epoch"] for _, metrics in logger.calls if "train_acc_epoch" in metrics]
    assert epoch_logged == pytest.approx([hand_accuracy(model)])
    assert hand_accuracy(model) != pytest.approx(sum(batch_accuracies) / 3)
    assert float(trainer.callback_metrics["val_acc"]) == pytest.approx(hand_accuracy(model))
    assert float(trainer.callback_metrics["train_acc"]) == pytest.approx(hand_accuracy(model))


class StateAtEpochEnd(Callback):
    """What the metrics hold when each epoch has ended and when the next starts."""

    def __init__(self) -> None:
        self.updates_at_epoch_start: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.updates_at_epoch_start.append(pl_module.train_accuracy._update_count)


def test_metrics_are_reset_after_each_epoch(tmp_path):
    model = Classifier()
    seen = StateAtEpochEnd()
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=2, logger=False, callbacks=[seen], **QUIET)
    trainer.fit(model, loader(), loader())
    assert seen.updates_at_epoch_start == [0, 0]
    assert model.train_accuracy._update_count == 0
    assert model.val_accuracy._update_count == 0
    # The second epoch's value covers only that epoch's 10 predictions (the same ones: lr is 0), not 20.
    assert float(trainer.callback_metrics["train_acc_epoch"]) == pytest.approx(hand_accuracy(model))


def test_a_metric_updated_without_forward_logs_only_its_epoch_value(tmp_path):
    class UpdateOnly(Classifier):
        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.layer(x)
            self.train_accuracy.update(logits, y)
            self.log("train_acc", self.train_accuracy, on_step=True, on_epoch=True)
            return nn.functional.cross_entropy(logits, y)

    logger = RecordingLogger()
    model = UpdateOnly()
    Trainer(default_root_dir=tmp_path, max_epochs=1, logger=logger, log_every_n_steps=1, **QUIET).fit(model, loader())
    assert not any("train_acc_step" in metrics for _, metrics in logger.calls)
    assert [m["train_acc_epoch"] for _, m in logger.calls if "train_acc_epoch" in m] == pytest.approx(
        [hand_accuracy(model)]
    )


def test_a_metric_collection_logs_each_metric_under_its_prefixed_name(tmp_path):
    class WithCollection(Classifier):
        def __init__(self) -> None:
            super().__init__()
            self.val_metrics = torchmetrics.MetricCollection(
                {"acc": torchmetrics.Accuracy(task="multiclass", num_classes=3),
                 "recall": torchmetrics.Recall(task="multiclass", num_classes=3, average="macro")},
                prefix="val_",
            )

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.val_metrics(self.layer(x), y)
            self.log_dict(self.val_metrics)

    model = WithCollection()
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=1, logger=False, **QUIET)
    trainer.fit(model, loader(), loader())
    with torch.no_grad():
        predictions = model.layer(FEATURES).argmax(dim=1)
    recalls = [(predictions[TARGETS == c] == c).float().mean().item() for c in range(3)]
    assert float(trainer.callback_metrics["val_acc"]) == pytest.approx(hand_accuracy(model))
    assert float(trainer.callback_metrics["val_recall"]) == pytest.approx(sum(recalls) / 3)


def test_validate_returns_the_computed_metric(tmp_path):
    model = Classifier()
    results = Trainer(default_root_dir=tmp_path, logger=False, **QUIET).validate(model, loader(), verbose=False)
    assert results == [{"val_acc": pytest.approx(hand_accuracy(model))}]


def test_a_metric_that_is_no_attribute_of_the_module_is_refused_naming_the_fix(tmp_path):
    class Hidden(Classifier):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = [torchmetrics.Accuracy(task="multiclass", num_classes=3)]

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.hidden[0](self.layer(x), y)
            self.log("val_acc", self.hidden[0])

    trainer = Trainer(default_root_dir=tmp_path, logger=False, **QUIET)
    with pytest.raises(MisconfigurationError, match=r"metric_attribute=name.*'train_accuracy', 'val_accuracy'"):
        trainer.validate(Hidden(), loader(), verbose=False)


def test_metric_attribute_lets_a_metric_held_elsewhere_be_logged(tmp_path):
    class Named(Classifier):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = [torchmetrics.Accuracy(task="multiclass", num_classes=3)]

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.hidden[0](self.layer(x), y)
            self.log("val_acc", self.hidden[0], metric_attribute="hidden")

    model = Named()
    results = Trainer(default_root_dir=tmp_path, logger=False, **QUIET).validate(model, loader(), verbose=False)
    assert results == [{"val_acc": pytest.approx(hand_accuracy(model))}]


def test_logging_a_collection_with_self_log_names_log_dict(tmp_path):
    class Wrong(Classifier):
        def validation_step(self, batch, batch_idx):
            self.log("metrics", torchmetrics.MetricCollection([torchmetrics.MeanMetric()]))

    trainer = Trainer(default_root_dir=tmp_path, logger=False, **QUIET)
    with pytest.raises(MisconfigurationError, match="self.log_dict"):
        trainer.validate(Wrong(), loader(), verbose=False)


def test_importing_the_packages_does_not_import_torchmetrics():
    code = "import sys, engineering, research, auxiliary; assert 'torchmetrics' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
