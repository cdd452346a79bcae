"""What the tracker loggers share: optional imports named by their extra, and the courier that keeps a failing
tracker from stopping training."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auxiliary import CometLogger, MLFlowLogger, NeptuneLogger, WandbLogger
from auxiliary.loggers.tracking import Courier
from engineering import Logger, ModelCheckpoint, Trainer
from tests.helpers import TinyModule, tiny_loader

ROOT = Path(__file__).resolve().parents[3]
TRACKERS = [(MLFlowLogger, "mlflow", "mlflow"), (WandbLogger, "wandb", "wandb"), (CometLogger, "comet_ml", "comet"),
            (NeptuneLogger, "neptune", "neptune")]


def test_importing_tribus_and_its_loggers_imports_no_tracker_library():
    code = ("import sys, research, engineering, auxiliary\n"
            "from auxiliary import CometLogger, MLFlowLogger, NeptuneLogger, WandbLogger\n"
            "print(sorted(name for name in ('mlflow', 'wandb', 'comet_ml', 'neptune') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize(("logger", "module", "extra"), TRACKERS, ids=[module for _, module, _ in TRACKERS])
def test_a_logger_whose_library_is_missing_names_the_extra_to_install(logger, module, extra, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == module else find_spec(name, *args))
    with pytest.raises(ModuleNotFoundError, match=rf"{logger.__name__} needs the '{module}' package.*"
                                                   rf"pip install 'tribus\[{extra}\]'"):
        logger()


class Flaky:
    """A tracker call that fails ``failures`` times, then records what it was given."""

    def __init__(self, failures: int) -> None:
        self.failures, self.delivered = failures, []

    def call(self, value: int):
        def deliver() -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("server gone")
            self.delivered.append(value)
        return deliver


def test_a_failing_call_warns_with_the_tracker_name_and_is_retried_in_order():
    courier, tracker = Courier("Tracker", first_delay_s=0.01), Flaky(failures=2)
    courier.send("call 0", tracker.call(0))
    with pytest.warns(RuntimeWarning, match="Tracker: call 0 failed"):
        assert courier.flush(5)
    assert tracker.delivered == [0]  # retried until it went through
    failing = Flaky(failures=3)
    courier.send("call 1", failing.call(1))
    time.sleep(0.05)
    # At the next send, or at the flush on a machine too busy to have tried call 1 by then.
    with pytest.warns(RuntimeWarning, match="Tracker: call 1 failed: ConnectionError: server gone. Training goes on"):
        courier.send("call 2", failing.call(2))
        assert courier.flush(5)
    assert failing.delivered == [1, 2]
    courier.close(1)


def test_a_refused_call_is_dropped_with_a_warning_and_the_rest_delivered():
    tracker = Flaky(failures=0)

    def refused() -> None:
        raise ValueError("bad value")

    courier = Courier("Tracker", permanent=lambda error: isinstance(error, ValueError))
    # The warning comes at the next send or at the flush, whichever follows the refusal: both are inside.
    with pytest.warns(RuntimeWarning, match="Tracker: call 0 failed: bad value; the tracker refused it"):
        courier.send("call 0", refused)
        courier.send("call 1", tracker.call(1))
        assert courier.flush(5)
    assert tracker.delivered == [1]
    courier.close(1)


def test_closing_gives_up_after_the_timeout_and_says_what_was_lost():
    courier = Courier("Tracker", first_delay_s=0.01, max_delay_s=0.05)
    courier.send("call 0", Flaky(failures=10**6).call(0))
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match=r"Tracker: 1 calls were not delivered within 1 s .*\(call 0\)"):
        courier.close(1)
    assert time.monotonic() - started < 3


class SaveRecorder(Logger):
    def __init__(self) -> None:
        self.saved: list[list[str]] = []

    def log_metrics(self, metrics, step=None) -> None: ...

    def log_hyperparams(self, params) -> None: ...

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self.saved.append(sorted(path.name for path in Path(checkpoint_callback.dirpath).glob("*.ckpt")))


def test_model_checkpoint_tells_every_logger_after_each_file_it_writes(tmp_path):
    first, second = SaveRecorder(), SaveRecorder()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1)
    Trainer(max_epochs=2, logger=[first, second], callbacks=[checkpoint], enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path).fit(TinyModule(), tiny_loader())
    assert first.saved == second.saved == [["epoch=0-step=4.ckpt"], ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt"]]
