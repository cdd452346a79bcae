"""The progress bar, read back from what it wrote: tqdm on a terminal, a few plain lines elsewhere."""

from __future__ import annotations

import io

import pytest

from auxiliary import CSVLogger, TQDMProgressBar
from engineering import Trainer
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_model_summary=False, enable_checkpointing=False)


class Terminal(io.StringIO):
    """What tqdm writes to a terminal, kept; says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_thousand_batches_print_a_few_plain_lines(tmp_path):
    stream = io.StringIO()
    bar = TQDMProgressBar(stream=stream)
    trainer = Trainer(max_epochs=1, callbacks=[bar], default_root_dir=tmp_path, logger=False, **NO_EXTRAS)
    trainer.fit(TinyModule(), tiny_loader(samples=1000 * 4, batch_size=4))
    output = stream.getvalue()
    assert "\r" not in output and "\x1b" not in output
    lines = output.splitlines()
    assert 1 <= len(lines) <= 10, lines
    assert lines[-1].startswith("Epoch 0: 1000/1000 [")
    assert "it/s]" in lines[-1] and "loss=" in lines[-1] and "train_loss=" in lines[-1]


def test_off_a_terminal_a_line_appears_every_line_interval(tmp_path):
    stream = io.StringIO()
    bar = TQDMProgressBar(stream=stream, line_interval=0.0)
    trainer = Trainer(max_epochs=1, callbacks=[bar], default_root_dir=tmp_path, logger=False, **NO_EXTRAS)
    trainer.fit(TinyModule(), tiny_loader())
    lines = stream.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines] == ["Epoch 0: 1/4", "Epoch 0: 2/4", "Epoch 0: 3/4",
                                                      "Epoch 0: 4/4", "Epoch 0: 4/4"]


def test_each_epoch_ends_with_a_line_carrying_the_validation_metrics_and_version(tmp_path):
    stream = io.StringIO()
    trainer = Trainer(max_epochs=2, callbacks=[TQDMProgressBar(stream=stream)], default_root_dir=tmp_path,
                      logger=CSVLogger(tmp_path), **NO_EXTRAS)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader(seed=1))
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["Epoch 0", "Epoch 1"]  # no sanity or validation lines in fit
    assert all("v_num=0" in line and "val_loss=" in line for line in lines)


class Predictor(TinyModule):
    def predict_step(self, batch, batch_idx):
        return self(batch[0])


def test_standalone_evaluation_prints_its_own_line(tmp_path):
    stream = io.StringIO()
    trainer = Trainer(callbacks=[TQDMProgressBar(stream=stream)], default_root_dir=tmp_path, logger=False,
                      **NO_EXTRAS)
    trainer.validate(Predictor(), tiny_loader(), verbose=False)
    trainer.test(Predictor(), tiny_loader(), verbose=False)
    trainer.predict(Predictor(), tiny_loader())
    lines = stream.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines] == ["Validation: 4/4", "Testing: 4/4", "Predicting: 4/4"]
    assert "val_loss=" in lines[0] and "loss=" not in lines[1].replace("test_loss", "")


def test_on_a_terminal_tqdm_draws_training_sanity_and_validation_bars(tmp_path):
    terminal = Terminal()
    trainer = Trainer(max_epochs=2, callbacks=[TQDMProgressBar(stream=terminal)], default_root_dir=tmp_path,
                      logger=CSVLogger(tmp_path), **NO_EXTRAS)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader(seed=1))
    output = terminal.getvalue()
    for description in ("Sanity Checking", "Validation", "Epoch 0", "Epoch 1"):
        assert description in output
    assert "4/4" in output and "it/s" in output
    assert "v_num=0" in output and "train_loss=" in output and "val_loss=" in output and "loss=" in output


def test_refresh_rate_bounds_how_often_the_bar_is_redrawn(tmp_path):
    def redraws(refresh_rate: int) -> int:
        terminal = Terminal()
        bar = TQDMProgressBar(refresh_rate=refresh_rate, stream=terminal)
        trainer = Trainer(max_epochs=1, callbacks=[bar], default_root_dir=tmp_path, logger=False, **NO_EXTRAS)
        trainer.fit(TinyModule(), tiny_loader(samples=40 * 4, batch_size=4))
        return terminal.getvalue().count("/40 [")

    assert redraws(1) >= 40
    assert redraws(10) <= 8  # a redraw every 10 batches, plus opening and closing ones


def test_refresh_rate_zero_draws_nothing(tmp_path):
    terminal = Terminal()
    trainer = Trainer(max_epochs=1, callbacks=[TQDMProgressBar(refresh_rate=0, stream=terminal)],
                      default_root_dir=tmp_path, logger=False, **NO_EXTRAS)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader())
    assert terminal.getvalue() == ""


def test_enable_progress_bar_false_removes_the_default_bar(tmp_path):
    trainer = Trainer(enable_progress_bar=False, default_root_dir=tmp_path)
    assert not any(isinstance(callback, TQDMProgressBar) for callback in trainer.callbacks)


def test_a_bad_refresh_rate_names_the_fix():
    with pytest.raises(ValueError, match="refresh_rate=-1 must be an int >= 0"):
        TQDMProgressBar(refresh_rate=-1)
