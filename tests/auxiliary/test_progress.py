"""The progress bar, read back from what it wrote: tqdm on a terminal, a few plain lines elsewhere."""

from __future__ import annotations

import io
import re

import pytest
import torch
from torch.nn import functional as F

from auxiliary import CSVLogger, TQDMProgressBar
from engineering import Callback, Trainer
from engineering.bus import log_writer
from tests.helpers import Terminal, TinyModule, tiny_loader

NO_EXTRAS = dict(enable_model_summary=False, enable_checkpointing=False)


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


# -------------------------------------------------------------------------------------------------
# What a user sees: an 80-column terminal, a redirected file, evaluation bars
# -------------------------------------------------------------------------------------------------
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def screen_rows(terminal: Terminal) -> list[str]:
    """Every state a terminal row went through, without cursor movements."""
    return [ANSI.sub("", row) for row in re.split(r"[\r\n]", terminal.getvalue()) if ANSI.sub("", row).strip()]


class FourMetrics(TinyModule):
    """Three prog_bar metrics besides ``v_num``, two of them validation metrics with long names."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean(), prog_bar=True)


def test_an_80_column_terminal_shows_the_validation_metrics_and_no_duplicate_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    terminal = Terminal()
    trainer = Trainer(max_epochs=2, callbacks=[TQDMProgressBar(stream=terminal)], default_root_dir=tmp_path,
                      logger=CSVLogger(tmp_path), **NO_EXTRAS)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader(seed=1))
    rows = screen_rows(terminal)
    assert all(len(row) < 80 for row in rows), [row for row in rows if len(row) >= 80]
    last = [row for row in rows if row.startswith("Epoch 1")][-1]
    assert re.search(r"v_num=0, train_loss=\d\.\d+, val_loss=\d\.\d+\]$", last), last
    assert not re.search(r"(?<!_)loss=", last), last  # train_loss only, not Lightning 1.x's extra loss=


def test_names_too_long_for_80_columns_are_shortened_not_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    terminal = Terminal()
    trainer = Trainer(max_epochs=1, callbacks=[TQDMProgressBar(stream=terminal)], default_root_dir=tmp_path,
                      logger=CSVLogger(tmp_path), **NO_EXTRAS)
    trainer.fit(FourMetrics(), tiny_loader(samples=200 * 16), tiny_loader(seed=1))
    last = [row for row in screen_rows(terminal) if row.startswith("Epoch 0")][-1]
    assert len(last) < 79, last  # tqdm cuts a line at 79 columns: shorter, nothing was cut
    assert re.match(r"Epoch 0: 100% 200/200 <00:00, ", last), last  # the tightest layout: count, percent, ETA
    fields = re.findall(r"([\w…]+)=([\d.e+-]+)", last)
    assert len(fields) == 4 and fields[0] == ("v_num", "0"), last
    assert all("…" in name for name, _ in fields[1:]), last
    assert all(len(value.replace(".", "").lstrip("0")) <= 3 for _, value in fields[1:]), last  # 3 significant digits


def test_a_wide_terminal_shows_tqdms_whole_line_with_whole_names(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    terminal = Terminal()
    trainer = Trainer(max_epochs=1, callbacks=[TQDMProgressBar(stream=terminal)], default_root_dir=tmp_path,
                      logger=CSVLogger(tmp_path), **NO_EXTRAS)
    trainer.fit(FourMetrics(), tiny_loader(), tiny_loader(seed=1))
    last = [row for row in screen_rows(terminal) if row.startswith("Epoch 0")][-1]
    assert re.match(r"Epoch 0: 100%\|.+\| 4/4 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(it/s|s/it), v_num=0, train_loss=", last), last
    assert "val_loss=" in last and "val_accuracy=" in last and "…" not in last


def test_redirected_output_has_one_line_per_interval_with_count_percent_and_eta(tmp_path):
    log = tmp_path / "train.log"
    with log.open("w") as stream:
        trainer = Trainer(max_epochs=1, callbacks=[TQDMProgressBar(stream=stream, line_interval=0.0)],
                          default_root_dir=tmp_path, logger=CSVLogger(tmp_path), **NO_EXTRAS)
        trainer.fit(FourMetrics(), tiny_loader(), tiny_loader(seed=1))
    lines = [line for line in log.read_text().splitlines() if line.startswith("Epoch")]
    shape = re.compile(r"Epoch 0: (\d)/4 \[(\d+)%, \d\d:\d\d<(\d\d:\d\d|\?), [\d.]+it/s\] v_num=0 train_loss=\S+")
    matches = [shape.match(line) for line in lines]
    assert all(matches), lines
    assert [(m.group(1), m.group(2)) for m in matches] == [("1", "25"), ("2", "50"), ("3", "75"), ("4", "100"),
                                                          ("4", "100")]
    assert matches[-1].group(3) == "00:00"
    assert "val_loss=" in lines[-1] and "val_accuracy=" in lines[-1] and " loss=" not in lines[-1]


def test_evaluation_bars_carry_no_version(tmp_path):
    stream = io.StringIO()
    trainer = Trainer(callbacks=[TQDMProgressBar(stream=stream)], default_root_dir=tmp_path,
                      logger=CSVLogger(tmp_path), **NO_EXTRAS)
    trainer.validate(Predictor(), tiny_loader(), verbose=False)
    trainer.test(Predictor(), tiny_loader(), verbose=False)
    lines = stream.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines] == ["Validation: 4/4", "Testing: 4/4"]
    assert "val_loss=" in lines[0] and not any("v_num" in line for line in lines)


# -------------------------------------------------------------------------------------------------
# Reading the metrics waits for the device: how often the bar does it
# -------------------------------------------------------------------------------------------------
class TwoStepMetrics(TinyModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("loss_doubled", 2 * loss.detach(), prog_bar=True)
        return loss


def host_reads_by_the_bar(tmp_path, monkeypatch, bar: TQDMProgressBar, batches: int) -> int:
    """Calls that copy a tensor's value to the host (a device sync on a GPU) during a fit of ``batches``
    steps, less those of the same fit without a bar (the DataLoader draws its seed with one). The values are
    read as on an accelerator, all of a device's in one transfer; on the CPU each is read where it is."""
    monkeypatch.setattr(log_writer, "READ_ONE_BY_ONE", ())
    reads = 0
    for name in ("item", "tolist", "__float__"):
        original = getattr(torch.Tensor, name)

        def counted(tensor, *args, _original=original, **kwargs):
            nonlocal reads
            reads += 1
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    for callbacks in ([], [bar]):
        before = reads
        trainer = Trainer(max_epochs=1, callbacks=callbacks, enable_progress_bar=bool(callbacks),
                          default_root_dir=tmp_path, logger=False, **NO_EXTRAS)
        trainer.fit(TwoStepMetrics(), tiny_loader(samples=batches * 4, batch_size=4))
        if not callbacks:
            without_bar = reads - before
    monkeypatch.undo()
    return reads - before - without_bar


def test_on_a_terminal_the_metrics_are_read_by_time_not_at_every_step(tmp_path, monkeypatch):
    every_step = host_reads_by_the_bar(tmp_path, monkeypatch, TQDMProgressBar(stream=Terminal(), metrics_interval=0),
                                       batches=100)
    assert every_step == 100 + 1  # two metrics, one transfer for both (not a float() each); one at the epoch end
    rarely = host_reads_by_the_bar(tmp_path, monkeypatch, TQDMProgressBar(stream=Terminal(), metrics_interval=3600),
                                   batches=100)
    assert rarely == 2  # the last batch and the epoch end


def test_off_a_terminal_the_metrics_are_read_only_for_a_printed_line(tmp_path, monkeypatch):
    reads = host_reads_by_the_bar(tmp_path, monkeypatch, TQDMProgressBar(stream=io.StringIO()), batches=100)
    assert reads == 1  # the epoch's closing line


def test_a_negative_interval_names_the_fix():
    with pytest.raises(ValueError, match="metrics_interval=-1 must be a number of seconds >= 0"):
        TQDMProgressBar(metrics_interval=-1)


class CustomBars(TQDMProgressBar):
    """Overrides init_train_tqdm, as Lightning users do to customise the training bar."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.made: list = []

    def init_train_tqdm(self):
        from tqdm import tqdm

        bar = tqdm(file=self.stream, ascii=True, leave=True)
        self.made.append(bar)
        return bar


class BarWatcher(Callback):
    """Reads the progress bar's tqdm bars by Lightning's names while they are open."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        bar = trainer.progress_bar_callback.train_progress_bar
        self.seen["train"] = (bar, bar.desc)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.seen["val"] = trainer.progress_bar_callback.val_progress_bar.desc

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.seen["test"] = trainer.progress_bar_callback.test_progress_bar.desc


def test_overriding_init_train_tqdm_changes_the_bar_drawn_and_the_bars_are_readable_by_name(tmp_path):
    bars, watcher = CustomBars(stream=Terminal()), BarWatcher()
    with pytest.raises(TypeError, match=r"The `CustomBars._train_progress_bar` reference has not been set yet."):
        bars.train_progress_bar
    trainer = Trainer(max_epochs=1, callbacks=[bars, watcher], logger=False, default_root_dir=tmp_path, **NO_EXTRAS)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader(seed=1))
    trainer.test(TinyModule(), tiny_loader(), verbose=False)
    assert len(bars.made) == 1 and watcher.seen["train"] == (bars.made[0], "Epoch 0")
    assert bars.made[0].total == 4 and bars.made[0].ascii
    assert (watcher.seen["val"], watcher.seen["test"]) == ("Validation", "Testing")
    assert "#" in bars.stream.getvalue()  # the ascii bar graph of the user's bar
    with pytest.raises(TypeError, match="_test_progress_bar` reference has not been set yet"):
        bars.test_progress_bar  # closed when testing ended


def test_a_tqdm_bar_set_by_name_is_the_one_read_back():
    from tqdm import tqdm

    bars = TQDMProgressBar(stream=Terminal())
    own = tqdm(file=bars.stream, total=3)
    bars.train_progress_bar = own
    bars.val_progress_bar = tqdm(file=bars.stream, total=2)
    assert bars.train_progress_bar is own and bars.val_progress_bar.total == 2
