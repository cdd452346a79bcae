"""``SaveConfigCallback``: the run's config, written to ``config.yaml`` in the log directory when the run sets up."""

from __future__ import annotations

import os

from jsonargparse import Namespace

from engineering.cli.parser import LightningArgumentParser
from engineering.bus.callback import Callback
from engineering.trainer import Trainer
from research import LightningModule

CONFIG_FILENAME = "config.yaml"
# Trainer flags Lightning does not have: left out of config.yaml while unset, so that Lightning reads the file too.
TRIBUS_ONLY_FLAGS = {"on_nonfinite": None}


class ConfigExistsError(FileExistsError):
    """``config.yaml`` is already in the log directory and overwriting it was not asked for."""


class SaveConfigCallback(Callback):
    """Write the run's config to ``config.yaml`` in ``trainer.log_dir`` when the run sets up, on global rank 0.

    Args:
        parser: the parser that read the config; it writes the file.
        config: the parsed config (of the subcommand).
        config_filename: the file's name in the log directory.
        overwrite: replace an existing file; without it an existing file stops the run.
        multifile: keep the structure of several ``--config`` files when saving.
        save_to_log_dir: write to the log directory; ``False`` is for subclasses whose ``save_config`` saves
            elsewhere.
    """

    def __init__(self, parser: LightningArgumentParser, config: Namespace, config_filename: str = CONFIG_FILENAME,
                 overwrite: bool = False, multifile: bool = False, save_to_log_dir: bool = True) -> None:
        if not save_to_log_dir and type(self).save_config is SaveConfigCallback.save_config:
            raise ValueError("save_to_log_dir=False leaves nothing to do: subclass SaveConfigCallback and "
                             "implement save_config, or keep save_to_log_dir=True")
        self.parser, self.config, self.config_filename = parser, config, config_filename
        self.overwrite, self.multifile, self.save_to_log_dir = overwrite, multifile, save_to_log_dir
        self.already_saved = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            path = os.path.join(trainer.log_dir, self.config_filename)
            # Every rank must stop if rank 0's file exists, or the others would wait for it forever.
            exists = trainer.strategy.broadcast(trainer.is_global_zero and os.path.isfile(path))
            if exists and not self.overwrite:
                raise ConfigExistsError(
                    f"{path} already exists, from an earlier run: pass --overwrite_config "
                    "(save_config_kwargs={'overwrite': True} in Python) to replace it, or choose another "
                    "directory with --trainer.default_root_dir"
                )
            if trainer.is_global_zero:
                os.makedirs(trainer.log_dir, exist_ok=True)  # the logger creates it only when it first writes
                self.parser.save(_without_unset_tribus_flags(self.config), path, skip_unset=False, overwrite=True,
                                 multifile=self.multifile)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
        self.already_saved = True

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Override to save the config somewhere else as well; called on global rank 0 only, so no collectives."""


def _without_unset_tribus_flags(config: Namespace) -> Namespace:
    config = config.clone()
    for name, default in TRIBUS_ONLY_FLAGS.items():
        key = f"trainer.{name}"
        if key in config and config[key] == default:
            del config[key]
    return config
