"""Loggers write on a background thread: a stalled logger does not hold training up beyond the queue's bound,
and loses no value once it catches up."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import engineering.bus.log_writer as log_writer
from engineering import Callback, Logger, Trainer, events
from tests.helpers import TinyModule, tiny_loader

STEPS = 40


class StalledLogger(Logger):
    """A logger on a stalled disk: each call waits for ``released`` (and then ``seconds``)."""

    writes_in_background = True

    def __init__(self, released: threading.Event, seconds: float = 0.0) -> None:
        super().__init__()
        self.released, self.seconds = released, seconds
        self.rows: list[tuple[int, float]] = []
        self.lag: list[int] = []  # optimizer steps done by training when each row arrived, minus the row's step
        self.trainer = None

    @property
    def name(self) -> str:
        return "stalled"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        self.released.wait()
        time.sleep(self.seconds)
        self.lag.append(self.trainer.global_step - step)
        self.rows.append((step, metrics["train_loss"]))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


class Release(Callback):
    """Records how many rows the logger had when training ended, then lets it go on."""

    def __init__(self, logger: StalledLogger) -> None:
        self.logger, self.rows_when_training_ended = logger, None

    def on_train_end(self, trainer, pl_module):
        self.rows_when_training_ended = len(self.logger.rows)
        self.logger.released.set()


def fit(logger: Logger, callbacks: list[Callback]) -> Trainer:
    trainer = Trainer(max_epochs=1, logger=logger, callbacks=callbacks, log_every_n_steps=1,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    if isinstance(logger, StalledLogger):
        logger.trainer = trainer
    trainer.fit(TinyModule(), tiny_loader(samples=STEPS * 2, batch_size=2))
    return trainer


def test_training_runs_ahead_of_a_stalled_logger_which_then_gets_every_value_in_order():
    stalled = StalledLogger(threading.Event())
    release = Release(stalled)
    trainer = fit(stalled, [release])

    assert trainer.global_step == STEPS
    assert release.rows_when_training_ended == 0  # every step ran while the logger was stuck
    assert [step for step, _ in stalled.rows] == list(range(STEPS))  # fit returned with all of them written
    assert all(isinstance(value, float) for _, value in stalled.rows)


def test_a_full_queue_bounds_how_far_training_runs_ahead(monkeypatch):
    monkeypatch.setattr(log_writer, "CAPACITY", 3)
    released = threading.Event()
    released.set()
    stalled = StalledLogger(released, seconds=0.02)
    fit(stalled, [])

    assert [step for step, _ in stalled.rows] == list(range(STEPS))
    # Ahead of the row being written: at most the 3 queued, the one blocked in put, and the step in progress.
    assert max(stalled.lag) <= 3 + 2
    assert max(stalled.lag) >= 3  # it did run ahead: the bound was what held it


def test_a_logger_that_does_not_ask_for_the_background_is_called_on_the_training_thread():
    class PlainLogger(StalledLogger):
        writes_in_background = False

        def log_metrics(self, metrics, step=None) -> None:
            self.rows.append((step, threading.current_thread().name))

    released = threading.Event()
    released.set()
    plain = PlainLogger(released)
    fit(plain, [])

    assert plain.rows == [(step, threading.main_thread().name) for step in range(STEPS)]


def test_a_logger_error_is_raised_by_fit():
    class BrokenLogger(StalledLogger):
        def log_metrics(self, metrics, step=None) -> None:
            raise OSError(28, "No space left on device", "metrics.csv")

    released = threading.Event()
    released.set()
    with pytest.raises(OSError, match="No space left"):
        fit(BrokenLogger(released), [])


class Float64Module(TinyModule):
    """Logs a float64 value that float32 cannot hold, next to the loss."""

    def training_step(self, batch, batch_idx):
        self.log("exact", torch.tensor(1 / 3 + batch_idx, dtype=torch.float64))
        return super().training_step(batch, batch_idx)


def test_loggers_and_bus_subscribers_get_plain_floats_with_float64_values_exact():
    released = threading.Event()
    released.set()
    background = StalledLogger(released)
    received = []

    def subscriber(trainer, pl_module=None, metrics=None, step=None):
        received.append((type(metrics), dict(metrics)))

    trainer = Trainer(max_epochs=1, logger=background, log_every_n_steps=1, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    background.trainer = trainer
    events.log_metrics.connect(subscriber, sender=trainer, weak=False)
    try:
        trainer.fit(Float64Module(), tiny_loader(samples=8, batch_size=2))
    finally:
        events.log_metrics.disconnect(subscriber)

    assert [kind for kind, _ in received] == [dict] * 4  # a subscriber on the training thread reads a dict
    assert [metrics["exact"] for _, metrics in received] == [1 / 3 + step for step in range(4)]
    assert [list(metrics) for _, metrics in received] == [["exact", "train_loss", "epoch"]] * 4
    assert [step for step, _ in background.rows] == list(range(4))


def test_only_background_receivers_get_values_still_on_their_way_to_the_host():
    queued = log_writer.LogWriter().receiver(lambda metrics, step: None)
    direct = log_writer.direct_receiver(lambda metrics, step: None)
    assert getattr(queued, "takes_pending_metrics", False) and not getattr(direct, "takes_pending_metrics", False)

    pending = log_writer.PendingMetrics({"epoch": torch.tensor(7.0), "loss": torch.tensor(0.5)}, {"epoch": 2})
    assert dict(pending) == {"epoch": 7.0, "loss": 0.5}  # a logged "epoch" wins over the one added


@pytest.mark.parametrize("with_float64", [False, True])
def test_values_of_every_dtype_read_as_float32_unless_a_float64_is_beside_them(with_float64):
    values = {"bf16": torch.tensor(1 / 3, dtype=torch.bfloat16), "f16": torch.tensor(1 / 3, dtype=torch.float16),
              "f32": torch.tensor(1 / 3), "big_int": torch.tensor(2**31 + 1), "flag": torch.tensor(True),
              "one_element": torch.tensor([0.1])}
    if with_float64:
        values["f64"] = torch.tensor(1 / 3, dtype=torch.float64)
    dtype = torch.float64 if with_float64 else torch.float32

    read = dict(log_writer.PendingMetrics(values, {}))

    assert read == {key: value.reshape(()).to(dtype).item() for key, value in values.items()}
    assert read["big_int"] == (2**31 + 1 if with_float64 else 2**31)  # float32 rounds it, as before
    assert all(type(value) is float for value in read.values())


def test_values_on_the_cpu_are_read_one_by_one_and_elsewhere_in_one_transfer_per_device(monkeypatch):
    reads = []
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda tensor, _name=name, _original=original: (
            reads.append((_name, tensor.dim())), _original(tensor))[1])
    values = {"a": torch.tensor(0.25), "b": torch.tensor(0.5), "c": torch.tensor(0.75)}

    assert dict(log_writer.PendingMetrics(values, {})) == {"a": 0.25, "b": 0.5, "c": 0.75}
    assert reads == [("item", 0)] * 3  # no stacking first: a read on the CPU waits for no device

    reads.clear()
    monkeypatch.setattr(log_writer, "READ_ONE_BY_ONE", ())  # as the values of an accelerator are read
    assert dict(log_writer.PendingMetrics(values, {})) == {"a": 0.25, "b": 0.5, "c": 0.75}
    assert reads == [("tolist", 1)]  # one transfer for the three


def test_a_logger_called_on_the_training_thread_gets_a_plain_dict():
    class DictLogger(StalledLogger):
        writes_in_background = False

        def log_metrics(self, metrics, step=None) -> None:
            self.rows.append((step, type(metrics)))

    released = threading.Event()
    released.set()
    logger = DictLogger(released)
    fit(logger, [])
    assert logger.rows == [(step, dict) for step in range(STEPS)]


def test_the_first_call_is_delivered_at_once_and_the_rest_by_the_end_of_fit(monkeypatch):
    monkeypatch.setattr(log_writer, "ROUND_SECONDS", 3600.0)  # no round comes during this run
    released = threading.Event()
    released.set()

    class SetUpLogger(StalledLogger):
        def __init__(self) -> None:
            super().__init__(released)
            self.set_up = threading.Event()

        def log_hyperparams(self, params, *args, **kwargs) -> None:
            self.set_up.set()

    class WaitsForTheSetUp(Callback):
        def __init__(self, logger: SetUpLogger) -> None:
            self.logger, self.set_up_during_training = logger, None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 2:
                self.set_up_during_training = self.logger.set_up.wait(timeout=60)

    logger = SetUpLogger()
    waits = WaitsForTheSetUp(logger)
    fit(logger, [waits])
    assert waits.set_up_during_training is True
    assert [step for step, _ in logger.rows] == list(range(STEPS))  # drained when fit ended
