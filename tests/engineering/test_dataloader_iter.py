"""``training_step(self, dataloader_iter)``: the step reads its own batches, with Lightning 2.6.6's counts and
hook arguments (the expected logs are what Lightning recorded for the same programs)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from engineering import Callback, Trainer, seed_everything
from research import LightningModule
from tests.helpers import QUIET

pytestmark = pytest.mark.filterwarnings("ignore:.*dataloader_iter")


class Records(Callback):
    def __init__(self, log: list) -> None:
        self.log = log

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.log.append(("start", None if batch is None else batch.tolist(), batch_idx, trainer.global_step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.log.append(("end", batch.tolist(), batch_idx, trainer.global_step))

    def on_train_epoch_end(self, trainer, pl_module):
        self.log.append(("epoch_end", trainer.current_epoch, trainer.global_step))


class ReadsItself(LightningModule):
    def __init__(self, per_step: int, log: list) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.per_step, self.record = per_step, log

    def training_step(self, dataloader_iter):
        loss = 0
        for _ in range(self.per_step):
            batch, batch_idx, dataloader_idx = next(dataloader_iter)
            self.record.append(("next", batch.tolist(), batch_idx, dataloader_idx))
            loss = loss + self.layer(batch.view(-1, 1)).sum()
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(tmp_path, per_step: int, **flags) -> tuple[list, Trainer, ReadsItself]:
    log: list = []
    seed_everything(0)
    model = ReadsItself(per_step, log)
    trainer = Trainer(max_epochs=2, callbacks=[Records(log)], default_root_dir=tmp_path, **{**QUIET, **flags})
    trainer.fit(model, DataLoader(torch.arange(5.0), batch_size=1))
    return log, trainer, model


def one_epoch(epoch: int, steps_before: int) -> list:
    log, step = [], steps_before
    for index in range(5):
        log += [("start", None if index == 0 else [float(index - 1)], max(index - 1, 0), step),
                ("next", [float(index)], index, 0)]
        step += 1
        log.append(("end", [float(index)], index, step))
    return log + [("epoch_end", epoch, step)]


def test_one_batch_a_step_sees_the_previous_batch_at_batch_start(tmp_path):
    log, trainer, _ = fit(tmp_path, per_step=1)
    assert log == one_epoch(0, 0) + one_epoch(1, 5)
    assert trainer.global_step == 10


def test_reading_past_the_end_inside_a_step_ends_the_epoch_without_a_step(tmp_path):
    log, trainer, _ = fit(tmp_path, per_step=2)
    epoch = [("start", None, 0, 0), ("next", [0.0], 0, 0), ("next", [1.0], 1, 0), ("end", [1.0], 1, 1),
             ("start", [1.0], 1, 1), ("next", [2.0], 2, 0), ("next", [3.0], 3, 0), ("end", [3.0], 3, 2),
             ("start", [3.0], 3, 2), ("next", [4.0], 4, 0)]
    second = [(kind, batch, index, step + 2 if kind != "next" else step) for kind, batch, index, step in epoch]
    assert log == epoch + [("epoch_end", 0, 2)] + second + [("epoch_end", 1, 4)]
    assert trainer.global_step == 4


def test_the_epoch_ends_once_the_limited_batches_were_read(tmp_path):
    log, trainer, _ = fit(tmp_path, per_step=2, limit_train_batches=3)
    epoch = [("start", None, 0, 0), ("next", [0.0], 0, 0), ("next", [1.0], 1, 0), ("end", [1.0], 1, 1),
             ("start", [1.0], 1, 1), ("next", [2.0], 2, 0)]
    second = [(kind, batch, index, step + 1 if kind != "next" else step) for kind, batch, index, step in epoch]
    assert log == epoch + [("epoch_end", 0, 1)] + second + [("epoch_end", 1, 2)]


def test_the_weights_are_those_of_a_hand_written_loop(tmp_path):
    _, _, model = fit(tmp_path, per_step=1)
    seed_everything(0)
    by_hand = ReadsItself(1, [])
    optimizer = by_hand.configure_optimizers()
    for _ in range(2):
        iterator = ((batch, index, 0) for index, batch in enumerate(DataLoader(torch.arange(5.0), batch_size=1)))
        for _ in range(5):
            loss = by_hand.training_step(iterator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    assert torch.equal(model.layer.weight, by_hand.layer.weight) and torch.equal(model.layer.bias, by_hand.layer.bias)


def test_lightnings_warnings_name_the_flavor(tmp_path):
    with pytest.warns(UserWarning, match="Found `dataloader_iter` argument in the `training_step`"):
        with pytest.warns(UserWarning, match="You are using the `dataloader_iter` step flavor"):
            Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET).fit(
                ReadsItself(1, []), DataLoader(torch.arange(2.0), batch_size=1))


class EvaluationRecords(Callback):
    def __init__(self, log: list) -> None:
        self.log = log

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.log.append(("start", None if batch is None else batch.tolist(), batch_idx, dataloader_idx))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.log.append(("end", batch.tolist(), batch_idx, dataloader_idx, outputs))


class ValidatesItself(ReadsItself):
    def validation_step(self, dataloader_iter):
        read = []
        for _ in range(self.per_step):
            batch, batch_idx, dataloader_idx = next(dataloader_iter)
            self.record.append(("next", batch.tolist(), batch_idx, dataloader_idx))
            read.append(batch_idx)
        self.log("v", float(sum(read)))
        return read

    def predict_step(self, dataloader_iter):
        batch, _, _ = next(dataloader_iter)
        return batch * 2


def two_loaders() -> list[DataLoader]:
    return [DataLoader(torch.arange(3.0), batch_size=1), DataLoader(torch.arange(10.0, 12.0), batch_size=1)]


def test_validation_reads_the_loaders_one_after_the_other_and_logs_as_lightning(tmp_path):
    log: list = []
    results = Trainer(callbacks=[EvaluationRecords(log)], default_root_dir=tmp_path, **QUIET).validate(
        ValidatesItself(1, log), two_loaders())
    assert log == [
        ("start", None, 0, 0), ("next", [0.0], 0, 0), ("end", [0.0], 0, 0, [0]),
        ("start", [0.0], 0, 0), ("next", [1.0], 1, 0), ("end", [1.0], 1, 0, [1]),
        ("start", [1.0], 1, 0), ("next", [2.0], 2, 0), ("end", [2.0], 2, 0, [2]),
        ("start", [2.0], 2, 0), ("next", [10.0], 0, 1), ("end", [10.0], 0, 1, [0]),
        ("start", [10.0], 0, 1), ("next", [11.0], 1, 1), ("end", [11.0], 1, 1, [1]),
    ]
    # A step's value counts for the dataloader of the batch read before it, as in Lightning: (0 + 1 + 2 + 0) / 4.
    assert results == [{"v/dataloader_idx_0": 0.75}, {"v/dataloader_idx_1": 1.0}]


def test_validation_reading_past_the_end_stops_there(tmp_path):
    log: list = []
    results = Trainer(callbacks=[EvaluationRecords(log)], default_root_dir=tmp_path, **QUIET).validate(
        ValidatesItself(2, log), two_loaders())
    assert log == [
        ("start", None, 0, 0), ("next", [0.0], 0, 0), ("next", [1.0], 1, 0), ("end", [1.0], 1, 0, [0, 1]),
        ("start", [1.0], 1, 0), ("next", [2.0], 2, 0), ("next", [10.0], 0, 1), ("end", [10.0], 0, 1, [2, 0]),
        ("start", [10.0], 0, 1), ("next", [11.0], 1, 1),
    ]
    assert results == [{"v/dataloader_idx_0": 1.5}, {}]


def test_predictions_go_to_the_loader_of_the_last_batch_read(tmp_path):
    trainer = Trainer(default_root_dir=tmp_path, **QUIET)
    predictions = trainer.predict(ValidatesItself(1, []), two_loaders())
    assert [[batch.tolist() for batch in per_loader] for per_loader in predictions] == [
        [[0.0], [2.0], [4.0]], [[20.0], [22.0]]
    ]
    single = trainer.predict(ValidatesItself(1, []), DataLoader(torch.arange(3.0), batch_size=1))
    assert [batch.tolist() for batch in single] == [[0.0], [2.0], [4.0]]


def test_on_train_batch_end_gets_the_outputs_dict_of_a_step_that_reads_its_batches(tmp_path):
    """As with plain batches: Lightning's ``{"loss": detached loss}``, and ``{}`` for a step that returned None."""
    seen: list = []

    class Skips(ReadsItself):
        def training_step(self, dataloader_iter):
            loss = super().training_step(dataloader_iter)
            return None if len(seen) % 2 else loss

    class Keeps(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(outputs)

    trainer = Trainer(max_epochs=1, limit_train_batches=4, callbacks=[Keeps()], default_root_dir=tmp_path, **QUIET)
    trainer.fit(Skips(1, []), DataLoader(torch.arange(5.0), batch_size=1))
    assert [set(outputs) for outputs in seen] == [{"loss"}, set(), {"loss"}, set()]
    assert not seen[0]["loss"].requires_grad
