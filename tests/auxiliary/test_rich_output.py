"""RichProgressBar and RichModelSummary: drawn with rich on a terminal, plain lines elsewhere, and rich is never
imported by importing tribus."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from auxiliary import RichModelSummary, RichProgressBar, TQDMProgressBar
from engineering import Trainer
from tests.helpers import TinyModule, tiny_loader

pytest.importorskip("rich")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
QUIETER = dict(logger=False, enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0)


def test_importing_tribus_imports_neither_rich_nor_matplotlib():
    check = ("import sys, research, engineering, auxiliary; "
             "assert 'rich' not in sys.modules and 'matplotlib' not in sys.modules, 'imported at import time'")
    subprocess.run([sys.executable, "-c", check], check=True, timeout=120)


def test_on_a_terminal_the_bars_are_drawn_by_rich(tmp_path):
    stream = io.StringIO()
    bar = RichProgressBar(console_kwargs={"force_terminal": True, "width": 150}, stream=stream, leave=True)
    trainer = Trainer(max_epochs=2, callbacks=[bar], default_root_dir=tmp_path, **QUIETER)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader(samples=32))
    assert TQDMProgressBar not in {type(callback) for callback in trainer.callbacks}  # the default stood aside
    drawn = ANSI.sub("", stream.getvalue())
    assert "\x1b[" in stream.getvalue()  # rich's escape codes: a live display, not plain lines
    assert "Epoch 0" in drawn and "Epoch 1" in drawn and "4/4" in drawn
    assert "train_loss:" in drawn and "val_loss:" in drawn


def test_off_a_terminal_it_prints_the_plain_lines_of_the_tqdm_bar(tmp_path):
    stream = io.StringIO()
    Trainer(max_epochs=1, callbacks=[RichProgressBar(stream=stream)], default_root_dir=tmp_path, **QUIETER).fit(
        TinyModule(), tiny_loader())
    lines = stream.getvalue().splitlines()
    assert "\x1b[" not in stream.getvalue()
    assert len(lines) == 1 and lines[0].startswith("Epoch 0: 4/4 [")


def test_without_rich_the_fix_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(ModuleNotFoundError, match="pip install rich"):
        RichProgressBar()
    with pytest.raises(ModuleNotFoundError, match="pip install rich"):
        RichModelSummary()


def test_the_rich_summary_shows_the_layers_and_the_totals(tmp_path, capsys):
    Trainer(max_epochs=1, limit_train_batches=1, callbacks=[RichModelSummary()], default_root_dir=tmp_path,
            enable_progress_bar=False, logger=False, enable_checkpointing=False).fit(TinyModule(), tiny_loader())
    printed = capsys.readouterr().out
    assert re.search(r"layer\s*│\s*Linear\s*│\s*66\s*│\s*train", printed)  # 32 * 2 + 2 parameters
    assert re.search(r"66\s+Trainable params", printed) and re.search(r"0\s+Non-trainable params", printed)
