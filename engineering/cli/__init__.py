"""The ``tribus`` command line and ``LightningCLI``, on jsonargparse: ``tribus fit --model pkg.Net --data pkg.Data``.

The options come from the ``__init__`` signatures (and docstrings) of the LightningModule, the LightningDataModule
and the Trainer. jsonargparse reads them, the ``--config`` files and the command line in the order given; tribus
adds the parts of Lightning's CLI around it and says what to type when a word is wrong. The guide is docs/cli.md.
This package imports jsonargparse: nothing else in tribus imports it.
"""

from __future__ import annotations

import os
import sys

from engineering.cli.lightning_cli import LightningCLI
from engineering.cli.save_config import ConfigExistsError, SaveConfigCallback
from engineering.cli.parser import LightningArgumentParser, ReduceLROnPlateau

__all__ = ["ConfigExistsError", "LightningArgumentParser", "LightningCLI", "ReduceLROnPlateau",
           "SaveConfigCallback", "main"]


def main(args: list[str] | None = None) -> None:
    """The ``tribus`` console script, also ``python -m engineering.cli``: model and data given by class path."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        # A console script's sys.path starts at its bin/ directory; `--model my_models.Net` should import from here.
        sys.path.insert(0, os.getcwd())
    LightningCLI(args=args, parser_kwargs={"prog": "tribus"})
