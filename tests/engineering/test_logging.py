"""``self.log``: where a value goes, when it is reduced, and what a logger receives, as in Lightning 2.x."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback, Logger, MisconfigurationError, Trainer
from engineering.bus import log_writer
from tests.helpers import TinyModule, tiny_loader
from research import LightningModule

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)

# 10 samples in batches of 4: sizes 4, 4, 2. The batch means of x are 1.5, 5.5 and 8.5.
BATCH_MEANS = [1.5, 5.5, 8.5]
BATCH_SIZES = [4, 4, 2]
WEIGHTED_MEAN = sum(m * s for m, s in zip(BATCH_MEANS, BATCH_SIZES)) / sum(BATCH_SIZES)  # 4.5, the mean of 0..9
UNWEIGHTED_MEAN = sum(BATCH_MEANS) / len(BATCH_MEANS)  # 5.1666..., what a batch-size-blind mean gives


def loader(samples: int = 10, batch_size: int = 4) -> DataLoader:
    x = torch.arange(samples, dtype=torch.float32).unsqueeze(1)
    return DataLoader(TensorDataset(x, 2 * x), batch_size=batch_size, shuffle=False)


class Logs(LightningModule):
    """A linear regression whose hooks are replaced per test through ``on_train`` / ``on_val``."""

    def __init__(self, on_train=None, on_val=None) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.on_train = on_train
        self.on_val = on_val

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.layer(x), y)
        if self.on_train is not None:
            self.on_train(self, x, loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        if self.on_val is not None:
            self.on_val(self, x)

    def test_step(self, batch, batch_idx):
        x, _ = batch
        self.log("test_mean", x.mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)  # lr 0: only logging is under test


class RecordingLogger(Logger):
    def __init__(self) -> None:
        self.calls: list[tuple[int | None, dict[str, float]]] = []
        self.hyperparams: list[dict] = []

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, params):
        self.hyperparams.append(dict(params))

    def steps_with(self, key: str) -> list[int | None]:
        return [step for step, metrics in self.calls if key in metrics]


class MetricsAt(Callback):
    """Copies callback_metrics (as floats) at the named hooks."""

    def __init__(self, *hooks: str) -> None:
        self.seen: dict[str, list[dict[str, float]]] = {hook: [] for hook in hooks}

    def _record(self, hook, trainer):
        if hook in self.seen:
            self.seen[hook].append({key: float(value) for key, value in trainer.callback_metrics.items()})

    def on_sanity_check_end(self, trainer, pl_module):
        self._record("on_sanity_check_end", trainer)

    def on_train_start(self, trainer, pl_module):
        self._record("on_train_start", trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._record("on_train_batch_end", trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._record("on_train_epoch_end", trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._record("on_validation_batch_end", trainer)

    def on_train_end(self, trainer, pl_module):
        self._record("on_train_end", trainer)


def fit(module, tmp_path, train=None, val=None, **flags):
    options = dict(QUIET, default_root_dir=tmp_path, max_epochs=1, num_sanity_val_steps=0)
    options.update(flags)
    trainer = Trainer(**options)
    trainer.fit(module, train if train is not None else loader(), val)
    return trainer


# -------------------------------------------------------------------------------------------------
# Defaults per hook
# -------------------------------------------------------------------------------------------------
def test_training_step_logs_per_step_by_default(tmp_path):
    seen = MetricsAt("on_train_batch_end", "on_train_epoch_end")
    trainer = fit(Logs(on_train=lambda m, x, loss: m.log("m", x.mean())), tmp_path, callbacks=[seen])

    assert [metrics["m"] for metrics in seen.seen["on_train_batch_end"]] == BATCH_MEANS
    # on_epoch=False: the value at the end is the last step's, not an epoch mean, and no forked keys.
    assert float(trainer.callback_metrics["m"]) == BATCH_MEANS[-1]
    assert "m_step" not in trainer.callback_metrics and "m_epoch" not in trainer.callback_metrics


def test_validation_step_logs_per_epoch_by_default(tmp_path):
    seen = MetricsAt("on_validation_batch_end")
    trainer = fit(Logs(on_val=lambda m, x: m.log("v", x.mean())), tmp_path, val=loader(), callbacks=[seen])

    assert float(trainer.callback_metrics["v"]) == pytest.approx(WEIGHTED_MEAN)
    assert "v_step" not in trainer.callback_metrics
    # Not published per step: before the epoch ends, callbacks do not see a value yet.
    assert all("v" not in metrics for metrics in seen.seen["on_validation_batch_end"])


def test_on_step_and_on_epoch_fork_the_name(tmp_path):
    seen = MetricsAt("on_train_batch_end")
    recorder = RecordingLogger()
    trainer = fit(
        Logs(on_train=lambda m, x, loss: m.log("m", x.mean(), on_step=True, on_epoch=True)),
        tmp_path, callbacks=[seen], logger=[recorder], log_every_n_steps=1,
    )

    assert [metrics["m_step"] for metrics in seen.seen["on_train_batch_end"]] == BATCH_MEANS
    assert float(trainer.callback_metrics["m_step"]) == BATCH_MEANS[-1]
    assert float(trainer.callback_metrics["m_epoch"]) == pytest.approx(WEIGHTED_MEAN)
    assert {"m_step", "m_epoch"} <= set(trainer.logged_metrics)
    assert "m" not in trainer.logged_metrics
    assert all("m" not in metrics for _, metrics in recorder.calls)


# -------------------------------------------------------------------------------------------------
# Reductions
# -------------------------------------------------------------------------------------------------
def test_epoch_mean_is_weighted_by_batch_size(tmp_path):
    trainer = fit(
        Logs(
            on_train=lambda m, x, loss: m.log("train_mean", x.mean(), on_step=False, on_epoch=True),
            on_val=lambda m, x: m.log("val_mean", x.mean()),
        ),
        tmp_path, val=loader(),
    )

    assert WEIGHTED_MEAN != pytest.approx(UNWEIGHTED_MEAN)
    assert float(trainer.callback_metrics["train_mean"]) == pytest.approx(WEIGHTED_MEAN)
    assert float(trainer.callback_metrics["val_mean"]) == pytest.approx(WEIGHTED_MEAN)


def test_explicit_batch_size_sets_the_weights(tmp_path):
    # Weights 1, 1, 2 instead of the inferred 4, 4, 2.
    weights = iter([1, 1, 2])
    trainer = fit(
        Logs(on_train=lambda m, x, loss: m.log("w", x.mean(), on_step=False, on_epoch=True, batch_size=next(weights))),
        tmp_path,
    )
    expected = (1.5 * 1 + 5.5 * 1 + 8.5 * 2) / 4
    assert float(trainer.callback_metrics["w"]) == pytest.approx(expected)


@pytest.mark.parametrize(("reduce_fx", "expected"), [("max", max(BATCH_MEANS)), ("sum", sum(BATCH_MEANS)),
                                                    ("min", min(BATCH_MEANS)), (torch.max, max(BATCH_MEANS))])
def test_reduce_fx(tmp_path, reduce_fx, expected):
    trainer = fit(
        Logs(
            on_train=lambda m, x, loss: m.log("t", x.mean(), on_step=False, on_epoch=True, reduce_fx=reduce_fx),
            on_val=lambda m, x: m.log("v", x.mean(), reduce_fx=reduce_fx),
        ),
        tmp_path, val=loader(),
    )
    # "sum" adds the logged values as they are, without batch-size weights (as Lightning does).
    assert float(trainer.callback_metrics["t"]) == pytest.approx(expected)
    assert float(trainer.callback_metrics["v"]) == pytest.approx(expected)


def test_epoch_values_restart_every_epoch(tmp_path):
    trainer = fit(
        Logs(on_train=lambda m, x, loss: m.log("e", x.mean() + m.current_epoch * 100, on_step=False, on_epoch=True)),
        tmp_path, max_epochs=2,
    )
    assert float(trainer.callback_metrics["e"]) == pytest.approx(WEIGHTED_MEAN + 100)


# -------------------------------------------------------------------------------------------------
# Progress bar, logger flag, multiple dataloaders
# -------------------------------------------------------------------------------------------------
def test_prog_bar_values_are_python_floats(tmp_path):
    trainer = fit(
        Logs(
            on_train=lambda m, x, loss: m.log("p", x.mean(), prog_bar=True, on_step=True, on_epoch=True),
            on_val=lambda m, x: m.log("val_p", x.mean(), prog_bar=True),
        ),
        tmp_path, val=loader(),
    )
    bar = trainer.progress_bar_metrics
    assert bar["p_step"] == BATCH_MEANS[-1]
    assert bar["p_epoch"] == pytest.approx(WEIGHTED_MEAN)
    assert bar["val_p"] == pytest.approx(WEIGHTED_MEAN)
    assert all(type(value) is float for value in bar.values()), bar


def test_value_not_on_progress_bar_unless_asked(tmp_path):
    trainer = fit(Logs(on_train=lambda m, x, loss: m.log("hidden", x.mean())), tmp_path)
    assert "hidden" not in trainer.progress_bar_metrics
    assert "hidden" in trainer.callback_metrics


def test_logger_false_keeps_a_value_for_callbacks_only(tmp_path):
    recorder = RecordingLogger()

    def on_train(module, x, loss):
        module.log("private", x.mean(), logger=False, on_step=True, on_epoch=True)
        module.log("public", x.mean())

    trainer = fit(Logs(on_train=on_train), tmp_path, logger=[recorder], log_every_n_steps=1)

    assert {"private_step", "private_epoch"} <= set(trainer.callback_metrics)
    assert not any(key.startswith("private") for key in trainer.logged_metrics)
    assert not any(key.startswith("private") for _, metrics in recorder.calls for key in metrics)
    assert "public" in trainer.logged_metrics


def test_several_val_dataloaders_get_a_suffix_and_the_index(tmp_path):
    indices: list[int] = []

    class TwoLoaders(Logs):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            indices.append(dataloader_idx)
            x, _ = batch
            self.log("val_mean", x.mean())

    short = loader(samples=4, batch_size=2)  # batches 0..1 and 2..3: mean 1.5
    trainer = fit(TwoLoaders(), tmp_path, val=[loader(), short])

    assert indices == [0, 0, 0, 1, 1]
    assert float(trainer.callback_metrics["val_mean/dataloader_idx_0"]) == pytest.approx(WEIGHTED_MEAN)
    assert float(trainer.callback_metrics["val_mean/dataloader_idx_1"]) == pytest.approx(1.5)
    assert "val_mean" not in trainer.callback_metrics

    results = trainer.validate(TwoLoaders(), [loader(), short], verbose=False)
    assert results == [
        {"val_mean/dataloader_idx_0": pytest.approx(WEIGHTED_MEAN)},
        {"val_mean/dataloader_idx_1": pytest.approx(1.5)},
    ]


# -------------------------------------------------------------------------------------------------
# What a Logger receives
# -------------------------------------------------------------------------------------------------
def logging_module() -> Logs:
    def on_train(module, x, loss):
        module.log("step_value", x.mean())                                # on_step only (the default)
        module.log("epoch_value", x.mean(), on_step=False, on_epoch=True)

    return Logs(on_train=on_train)


def test_logger_receives_floats_every_n_steps(tmp_path):
    recorder = RecordingLogger()
    fit(logging_module(), tmp_path, train=loader(samples=6, batch_size=1), logger=[recorder], log_every_n_steps=2)

    # Lightning logs when (batches_that_stepped + 1) % n == 0 and passes batches_that_stepped: steps 1, 3, 5.
    assert recorder.steps_with("step_value") == [1, 3, 5]
    received = {step: metrics["step_value"] for step, metrics in recorder.calls if "step_value" in metrics}
    assert received == {1: 1.0, 3: 3.0, 5: 5.0}  # the value of that very batch
    for _, metrics in recorder.calls:
        assert metrics["epoch"] == 0
        assert all(type(value) is float for key, value in metrics.items() if key != "epoch"), metrics
    assert recorder.steps_with("epoch_value") != []
    epoch_call = next(metrics for _, metrics in recorder.calls if "epoch_value" in metrics)
    assert epoch_call["epoch_value"] == pytest.approx(2.5)


def test_epoch_end_metrics_are_logged_at_the_last_step(tmp_path):
    # Lightning's fit loop: "loggers expect that the same step is used when logging epoch-end metrics
    # even when the batch loop has finished", so epoch-end values go out with batches_that_stepped - 1.
    recorder = RecordingLogger()
    fit(logging_module(), tmp_path, train=loader(samples=6, batch_size=1), logger=[recorder],
        log_every_n_steps=2, max_epochs=2)

    assert recorder.steps_with("step_value") == [1, 3, 5, 7, 9, 11]
    assert recorder.steps_with("epoch_value") == [5, 11]


def test_validation_in_fit_is_logged_at_the_step_it_ran_after(tmp_path):
    # Lightning validates in on_advance_end before batches_that_stepped is increased: validation after
    # the 6th batch of each epoch is logged at steps 5 and 11.
    recorder = RecordingLogger()
    fit(Logs(on_val=lambda m, x: m.log("val_mean", x.mean())), tmp_path, train=loader(samples=6, batch_size=1),
        val=loader(), logger=[recorder], log_every_n_steps=2, max_epochs=2)

    assert recorder.steps_with("val_mean") == [5, 11]


def test_step_values_are_not_resent_at_epoch_end(tmp_path):
    # 6 batches, log_every_n_steps=4: Lightning sends step values once (step 3); the epoch-end call
    # carries only the epoch values.
    recorder = RecordingLogger()
    fit(logging_module(), tmp_path, train=loader(samples=6, batch_size=1), logger=[recorder], log_every_n_steps=4)

    assert recorder.steps_with("step_value") == [3]
    assert len(recorder.steps_with("epoch_value")) == 1


def test_logger_gets_nothing_from_the_sanity_check(tmp_path):
    recorder = RecordingLogger()
    fit(Logs(on_val=lambda m, x: m.log("val_mean", x.mean())), tmp_path, val=loader(), logger=[recorder],
        num_sanity_val_steps=2, limit_train_batches=1, limit_val_batches=1)
    assert [metrics["val_mean"] for _, metrics in recorder.calls if "val_mean" in metrics] == [1.5]


# -------------------------------------------------------------------------------------------------
# Cost: no host sync per self.log call
# -------------------------------------------------------------------------------------------------
TRIBUS_PACKAGES = tuple(str(Path(__file__).resolve().parents[2] / name) + os.sep for name in ("engineering", "research", "auxiliary"))


def test_self_log_does_not_call_item(tmp_path, monkeypatch):
    # torch's DataLoader calls .item() once per iterator for its seed: only calls made by tribus count.
    calls: list[str] = []
    original = torch.Tensor.item

    def counting_item(self):
        caller = sys._getframe(1).f_code.co_filename
        if caller.startswith(TRIBUS_PACKAGES):
            calls.append(caller)
        return original(self)

    def on_train(module, x, loss):
        module.log("loss", loss)
        module.log("both", x.mean(), on_step=True, on_epoch=True, prog_bar=True)

    module = Logs(on_train=on_train, on_val=lambda m, x: m.log("val_mean", x.mean()))
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=2, num_sanity_val_steps=0, **QUIET)
    monkeypatch.setattr(log_writer, "READ_ONE_BY_ONE", ())  # values read as on an accelerator, where .item() syncs
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    trainer.fit(module, loader(samples=40), loader())
    monkeypatch.undo()

    assert float(trainer.callback_metrics["both_epoch"]) > 0  # the logging really happened
    assert calls == []


def test_item_counter_sees_tribus_calls(tmp_path, monkeypatch):
    """The counter above is able to fail: it sees a host read made from tribus code (the progress bar's
    metrics are read with one .tolist() for all values, which the same counter catches)."""
    calls: list[str] = []
    original = torch.Tensor.tolist

    def counting_tolist(self):
        if sys._getframe(1).f_code.co_filename.startswith(TRIBUS_PACKAGES):
            calls.append("tribus")
        return original(self)

    trainer = fit(Logs(on_train=lambda m, x, loss: m.log("p", x.mean(), prog_bar=True)), tmp_path)
    monkeypatch.setattr(log_writer, "READ_ONE_BY_ONE", ())
    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    assert trainer.progress_bar_metrics == {"p": BATCH_MEANS[-1]}
    monkeypatch.undo()
    assert calls == ["tribus"]


# -------------------------------------------------------------------------------------------------
# Misuse: each error names the fix
# -------------------------------------------------------------------------------------------------
def test_non_scalar_tensor_is_refused(tmp_path):
    module = Logs(on_train=lambda m, x, loss: m.log("vector", x))
    with pytest.raises(MisconfigurationError, match=r"scalar.*mean\(\)"):
        fit(module, tmp_path)


def test_string_value_is_refused(tmp_path):
    module = Logs(on_train=lambda m, x, loss: m.log("name", "hello"))
    with pytest.raises(MisconfigurationError, match="number or a one-element tensor"):
        fit(module, tmp_path)


def test_log_outside_a_run_warns_and_does_nothing():
    # Lightning 2.x: a step method called in a unit test, without a Trainer, warns and logs nothing.
    module = Logs()
    with pytest.warns(UserWarning, match="not attached to a Trainer"):
        module.log("loss", 1.0)
    x = torch.ones(2, 1)
    module.on_train = lambda m, x, loss: m.log("loss", loss)
    with pytest.warns(UserWarning, match="not attached to a Trainer"):
        assert module.training_step((x, x), 0).dim() == 0  # a step method is testable on its own


def test_on_step_in_an_epoch_hook_is_refused(tmp_path):
    class EpochEnd(Logs):
        def on_train_epoch_end(self):
            self.log("late", 1.0, on_step=True)

    with pytest.raises(MisconfigurationError, match="on_step=False"):
        fit(EpochEnd(), tmp_path)


def test_unknown_reduce_fx_is_refused(tmp_path):
    module = Logs(on_train=lambda m, x, loss: m.log("m", x.mean(), on_epoch=True, reduce_fx="median"))
    with pytest.raises(MisconfigurationError, match="'mean', 'sum', 'max' or 'min'"):
        fit(module, tmp_path)


def test_logging_in_an_epoch_hook_is_visible_to_callbacks(tmp_path):
    class EpochEnd(Logs):
        def on_train_epoch_end(self):
            self.log("from_epoch_end", 7.0)

    seen = MetricsAt("on_train_epoch_end", "on_train_end")
    fit(EpochEnd(), tmp_path, callbacks=[seen])
    # The callback's hook runs before the module's (Lightning order), so only later hooks see it.
    assert seen.seen["on_train_end"][0]["from_epoch_end"] == 7.0


# -------------------------------------------------------------------------------------------------
# Sanity check, validate and test
# -------------------------------------------------------------------------------------------------
def test_sanity_check_metrics_are_dropped(tmp_path):
    seen = MetricsAt("on_sanity_check_end", "on_train_start")
    recorder = RecordingLogger()
    trainer = fit(
        Logs(on_val=lambda m, x: m.log("val_mean", x.mean())), tmp_path, val=loader(),
        callbacks=[seen], logger=[recorder], num_sanity_val_steps=1, limit_train_batches=1,
    )
    assert seen.seen["on_sanity_check_end"][0]["val_mean"] == 1.5  # the sanity value existed ...
    assert "val_mean" not in seen.seen["on_train_start"][0]       # ... and was dropped before training
    assert float(trainer.callback_metrics["val_mean"]) == pytest.approx(WEIGHTED_MEAN)


def test_sanity_check_metrics_are_gone_when_no_validation_follows(tmp_path):
    trainer = fit(
        Logs(on_val=lambda m, x: m.log("val_mean", x.mean())), tmp_path, val=loader(),
        num_sanity_val_steps=1, max_epochs=1, limit_train_batches=1, check_val_every_n_epoch=2,
    )
    assert "val_mean" not in trainer.callback_metrics
    assert "val_mean" not in trainer.logged_metrics


def test_validate_and_test_return_a_list_of_float_dicts(tmp_path):
    trainer = Trainer(default_root_dir=tmp_path, **QUIET)
    module = Logs(on_val=lambda m, x: m.log("val_mean", x.mean()))

    validated = trainer.validate(module, loader(), verbose=False)
    tested = trainer.test(module, loader(), verbose=False)

    assert validated == [{"val_mean": pytest.approx(WEIGHTED_MEAN)}]
    assert tested == [{"test_mean": pytest.approx(WEIGHTED_MEAN)}]
    assert all(type(value) is float for value in (*validated[0].values(), *tested[0].values()))


def test_validate_prints_a_table_when_verbose(tmp_path, capsys):
    Trainer(default_root_dir=tmp_path, **QUIET).validate(Logs(on_val=lambda m, x: m.log("val_mean", x.mean())), loader())
    out = capsys.readouterr().out
    assert "val_mean" in out and "4.5" in out


def test_logging_in_an_overridden_optimizer_step_is_per_step(tmp_path):
    class LogsInOptimizerStep(TinyModule):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            self.log("before_closure", float(batch_idx))
            optimizer.step(closure=optimizer_closure)

    module = LogsInOptimizerStep()
    trainer = Trainer(**QUIET, default_root_dir=tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=1)
    trainer.fit(module, tiny_loader(), tiny_loader())  # the second epoch follows a validation
    assert trainer.callback_metrics["before_closure"] == 2.0
    assert "before_closure_epoch" not in trainer.callback_metrics
