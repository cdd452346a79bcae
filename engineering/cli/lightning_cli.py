"""``LightningCLI``: parse the command line and configs with jsonargparse, build the objects, run the subcommand."""

from __future__ import annotations

import argparse
import importlib
import secrets
import sys
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from jsonargparse import ActionConfigFile, ArgumentError, Namespace

from engineering.cli.errors import explain
from engineering.cli.parser import LIGHTNING_ONLY_TRAINER_FLAGS, LightningArgumentParser
from engineering.cli.save_config import CONFIG_FILENAME, ConfigExistsError, SaveConfigCallback
from engineering.seed import seed_everything
from engineering.trainer import Trainer
from research import LightningDataModule, LightningModule


class _OverwriteConfig(argparse.Action):
    """``--overwrite_config``: a switch of the run, not part of its config, so it is never saved or printed."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        parser.overwrite_config = True


class LightningCLI:
    """Parse the command line, build the model, datamodule and Trainer, and run the subcommand.

    Args:
        model_class: the LightningModule class; ``None`` means any, chosen with ``--model package.module.Class``.
        datamodule_class: the LightningDataModule class; ``None`` means any (or none), chosen with ``--data``.
        save_config_callback: the callback that writes ``config.yaml``; ``None`` writes none.
        save_config_kwargs: keyword arguments of that callback, such as ``{"overwrite": True}``.
        trainer_class: the Trainer class whose ``__init__`` gives the ``--trainer.*`` options.
        trainer_defaults: Trainer arguments that replace the signature's defaults; its callbacks are always added.
        seed_everything_default: the default of ``--seed_everything``: an int, ``True`` (a random seed) or ``False``.
        parser_kwargs: keyword arguments of the parser; a key named after a subcommand holds its parser's.
        parser_class: the parser class, ``LightningArgumentParser`` or a subclass.
        subclass_mode_model: let ``--model`` name any subclass of ``model_class``.
        subclass_mode_data: let ``--data`` name any subclass of ``datamodule_class``.
        args: the words to parse (``sys.argv[1:]`` when ``None``), or a dict of the config.
        run: parse a subcommand and run it; ``False`` builds the objects and leaves running to the caller.
        auto_configure_optimizers: add ``--optimizer`` and ``--lr_scheduler`` and build the model's
            ``configure_optimizers`` from them when they are given.
    """

    def __init__(
        self,
        model_class: type[LightningModule] | None = None,
        datamodule_class: type[LightningDataModule] | None = None,
        save_config_callback: type[SaveConfigCallback] | None = SaveConfigCallback,
        save_config_kwargs: dict[str, Any] | None = None,
        trainer_class: type[Trainer] = Trainer,
        trainer_defaults: dict[str, Any] | None = None,
        seed_everything_default: bool | int = True,
        parser_kwargs: dict[str, Any] | None = None,
        parser_class: type[LightningArgumentParser] = LightningArgumentParser,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        args: list[str] | dict[str, Any] | Namespace | None = None,
        run: bool = True,
        auto_configure_optimizers: bool = True,
    ) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = dict(save_config_kwargs or {})
        self.trainer_class = trainer_class
        self.trainer_defaults = dict(trainer_defaults or {})
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = dict(parser_kwargs or {})
        self.parser_class = parser_class
        self.auto_configure_optimizers = auto_configure_optimizers
        self.model_class, self.datamodule_class = model_class, datamodule_class
        self._model_class = model_class or LightningModule
        self._datamodule_class = datamodule_class or LightningDataModule
        self.subclass_mode_model = model_class is None or subclass_mode_model
        self.subclass_mode_data = datamodule_class is None or subclass_mode_data

        subcommand_kwargs = {name: self.parser_kwargs.pop(name) for name in self.subcommands()
                             if name in self.parser_kwargs}
        self.setup_parser(run, self.parser_kwargs, subcommand_kwargs)
        self.parse_arguments(self.parser, args)
        self.subcommand: str | None = self.config["subcommand"] if run else None
        self._check_trainer_section()
        self._set_seed()
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # -- the parser ------------------------------------------------------------------------------------------
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Each subcommand, with the arguments of its Trainer method that are not options."""
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
            "test": {"model", "dataloaders", "datamodule"},
            "predict": {"model", "dataloaders", "datamodule"},
        }

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """A parser with ``--config``; errors are raised, for ``parse_arguments`` to explain."""
        kwargs.setdefault("exit_on_error", False)
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=ActionConfigFile,
                            help="a YAML config, as --print_config writes it; several are read in order, later wins")
        return parser

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any],
                     subcommand_kwargs: dict[str, dict[str, Any]]) -> None:
        """Build ``self.parser``: with subcommands, one parser per subcommand under it."""
        self.parser = self.init_parser(**main_kwargs)
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}
        self._subcommand_method_arguments: dict[str, list[str]] = {}
        if not add_subcommands:
            self._add_arguments(self.parser)
            return
        subcommands = self.parser.add_subcommands()
        for name, not_options in self.subcommands().items():
            method = getattr(self.trainer_class, name)
            description = (method.__doc__ or "").strip().partition("\n")[0]
            kwargs = {"description": description, **subcommand_kwargs.get(name, {})}
            parser = self.init_parser(**kwargs)
            self._add_arguments(parser)
            parser.add_argument("--overwrite_config", action=_OverwriteConfig,
                                help=f"replace an existing {CONFIG_FILENAME} in the log directory")
            self._subcommand_method_arguments[name] = parser.add_method_arguments(
                self.trainer_class, name, skip=set(not_options))
            self._subcommand_parsers[name] = parser
            subcommands.add_subcommand(name, parser, help=description)

    def _add_arguments(self, parser: LightningArgumentParser) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if not parser.optimizers:  # add_arguments_to_parser may have added its own
                parser.add_optimizer_args()
            if not parser.lr_schedulers:
                parser.add_lr_scheduler_args()
        self.link_optimizers_and_lr_schedulers(parser)

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add ``--seed_everything``."""
        parser.add_argument("--seed_everything", type=bool | int, default=self.seed_everything_default,
                            help="an int seeds python, numpy and torch before the classes are built; true picks a "
                                 "random seed and records it in config.yaml; false seeds nothing")

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the Trainer's, the model's and the datamodule's arguments."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{name}": value for name, value in self.trainer_defaults.items()
                             if name != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        # Without a datamodule class the model may bring its own dataloaders, so --data is optional.
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data,
                                        required=self.datamodule_class is not None)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Override to add arguments or ``parser.link_arguments(source, target)``; called for every parser."""

    @staticmethod
    def link_optimizers_and_lr_schedulers(parser: LightningArgumentParser) -> None:
        """Pass each optimizer or scheduler whose ``link_to`` is a key, as class path and arguments, to that key."""
        for key, (chosen, link_to) in {**parser.optimizers, **parser.lr_schedulers}.items():
            if link_to == "AUTOMATIC":
                continue
            if isinstance(chosen, tuple):
                parser.link_arguments(key, link_to)
            else:
                parser.link_arguments(key, link_to, compute_fn=_with_class_path(chosen))

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse ``args`` (a list of words, or a dict of the config) into ``self.config``; exit 2 on a mistake."""
        words = sys.argv[1:] if args is None else args
        try:
            if isinstance(words, (dict, Namespace)):
                self.config = parser.parse_object(words)
            else:
                self.config = parser.parse_args(list(words))
        except ArgumentError as error:
            self._usage_error(explain(str(error), self._parsers_for(words)), words)

    # -- building ------------------------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        """Override to run code before the classes are built."""

    def instantiate_classes(self) -> None:
        """Build the datamodule, the model and the Trainer from ``self.config``."""
        self.config_init = self._parser(self.subcommand).instantiate(self._section(self.config))
        self.datamodule: LightningDataModule | None = self.config_init.get("data")
        self.model: LightningModule = self.config_init.get("model")
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()

    def after_instantiate_classes(self) -> None:
        """Override to run code after the classes are built."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Build the Trainer from its config, ``kwargs`` winning; callbacks from other keys and the defaults join."""
        config = {**self.config_init.get("trainer", {}), **kwargs}
        for name in LIGHTNING_ONLY_TRAINER_FLAGS:
            config.pop(name, None)
        callbacks = config.get("callbacks")
        callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, Iterable) else [callbacks]
        callbacks += [self.config_init[key] for key in self._parser(self.subcommand).callback_keys]
        default_callbacks = self.trainer_defaults.get("callbacks", [])
        callbacks += default_callbacks if isinstance(default_callbacks, list) else [default_callbacks]
        if self.save_config_callback is not None and not config.get("fast_dev_run", False):
            parser = self._parser(self.subcommand)
            save_kwargs = {"overwrite": getattr(parser, "overwrite_config", False), **self.save_config_kwargs}
            callbacks.append(self.save_config_callback(parser, self._section(self.config), **save_kwargs))
        config["callbacks"] = callbacks
        try:
            return self.trainer_class(**config)
        except (ValueError, TypeError) as error:  # the Trainer's own checks, whose messages name the fix
            self._usage_error(f"the Trainer refused its arguments: {error}")

    @staticmethod
    def configure_optimizers(lightning_module: LightningModule, optimizer: torch.optim.Optimizer,
                             lr_scheduler: Any = None) -> Any:
        """What the model's ``configure_optimizers`` returns when ``--optimizer`` is given; override to change it."""
        if lr_scheduler is None:
            return optimizer
        monitor = getattr(lr_scheduler, "monitor", None)
        if monitor is not None:  # ReduceLROnPlateau follows a metric
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "monitor": monitor}}
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """Give the model a ``configure_optimizers`` built from ``--optimizer`` / ``--lr_scheduler``, if given."""
        if not self.auto_configure_optimizers:
            return
        parser = self._parser(subcommand)
        optimizer_keys = [key for key, (_, link_to) in parser.optimizers.items() if link_to == "AUTOMATIC"]
        scheduler_keys = [key for key, (_, link_to) in parser.lr_schedulers.items() if link_to == "AUTOMATIC"]
        if len(optimizer_keys) > 1 or len(scheduler_keys) > 1:
            raise ValueError(f"at most one optimizer and one lr_scheduler can be AUTOMATIC, found "
                             f"{optimizer_keys + scheduler_keys}: link the others to the model with link_to= "
                             "and build them in its configure_optimizers")
        optimizer_init = self._class_init(parser.optimizers, optimizer_keys)
        if optimizer_init is None:
            return
        scheduler_init = self._class_init(parser.lr_schedulers, scheduler_keys)
        optimizer = _instantiate(optimizer_init, self.model.parameters())
        scheduler = _instantiate(scheduler_init, optimizer) if scheduler_init else None
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and not hasattr(scheduler, "monitor"):
            self._usage_error("torch's ReduceLROnPlateau does not say which metric it follows: use "
                              "--lr_scheduler engineering.cli.ReduceLROnPlateau --lr_scheduler.monitor val_loss")
        if type(self.model).configure_optimizers is not LightningModule.configure_optimizers:
            warnings.warn(f"{type(self.model).__qualname__}.configure_optimizers is replaced by the optimizer "
                          "given with --optimizer", stacklevel=2)
        cli = self

        def configure_optimizers(module: LightningModule) -> Any:
            return cli.configure_optimizers(module, optimizer, scheduler)

        self.model.configure_optimizers = configure_optimizers.__get__(self.model)

    def _class_init(self, registered: dict[str, tuple[Any, str]], keys: list[str]) -> dict[str, Any] | None:
        """``{class_path, init_args}`` of the one automatic key, or ``None`` when it was not given."""
        if not keys:
            return None
        chosen, _ = registered[keys[0]]
        value = self.config_init.get(keys[0])
        if isinstance(value, Namespace):
            value = value.as_dict()
        if isinstance(chosen, tuple):
            return value or None
        return {"class_path": f"{chosen.__module__}.{chosen.__qualname__}", "init_args": value or {}}

    # -- running -------------------------------------------------------------------------------------------
    def _run_subcommand(self, subcommand: str) -> None:
        """Call ``before_<subcommand>``, the Trainer method (or this class's of that name), ``after_<subcommand>``."""
        before = getattr(self, f"before_{subcommand}", None)
        if callable(before):
            before()
        method = getattr(self, subcommand, getattr(self.trainer, subcommand))
        kwargs = {name: self.config_init[name] for name in self._subcommand_method_arguments[subcommand]}
        kwargs["model"] = self.model
        if self.datamodule is not None:
            kwargs["datamodule"] = self.datamodule
        try:
            method(**kwargs)
        except ConfigExistsError as error:
            self._usage_error(str(error))
        after = getattr(self, f"after_{subcommand}", None)
        if callable(after):
            after()

    def _set_seed(self) -> None:
        section = self._section(self.config)
        seed = section["seed_everything"]
        if seed is False:
            return
        if seed is True:
            seed = secrets.randbelow(2**32)  # not `random`: an earlier run may have seeded it alike
        try:
            section["seed_everything"] = seed_everything(seed, workers=True)
        except ValueError as error:
            self._usage_error(f"--seed_everything: {error}")

    def _check_trainer_section(self) -> None:
        """What jsonargparse lets through: a ``trainer:`` that is not a mapping, Lightning-only flags set."""
        trainer = self._section(self.config).get("trainer") or {}
        if not isinstance(trainer, Namespace):
            self._usage_error(f"trainer must be a mapping of Trainer flags, such as {{max_epochs: 3}}, "
                              f"got {trainer!r}")
        for name, default in LIGHTNING_ONLY_TRAINER_FLAGS.items():
            if name in trainer and trainer[name] != default:
                self._usage_error(f"trainer.{name}: tribus's Trainer does not have Lightning's {name} flag; "
                                  f"remove it or set it to {default!r}, Lightning's default, which changes nothing")

    # -- helpers -------------------------------------------------------------------------------------------
    def _parser(self, subcommand: str | None) -> LightningArgumentParser:
        return self.parser if subcommand is None else self._subcommand_parsers[subcommand]

    def _section(self, config: Namespace) -> Namespace:
        """The part of ``config`` that belongs to the subcommand (all of it without subcommands)."""
        return config[self.subcommand] if self.subcommand else config

    def _parsers_for(self, words: Any) -> list[LightningArgumentParser]:
        """The parsers an error may come from: the chosen subcommand's, else all of them."""
        named = [word for word in words if word in self._subcommand_parsers] if isinstance(words, list) else []
        if named:
            return [self._subcommand_parsers[named[0]]]
        return list(self._subcommand_parsers.values()) or [self.parser]

    def _usage_error(self, message: str, words: Any = None) -> None:
        """Print the usage line and ``message``, then exit with status 2, as argparse does."""
        subcommand = getattr(self, "subcommand", None)
        parsers = [self._parser(subcommand)] if subcommand else self._parsers_for(words or [])
        prog = (parsers[0] if len(parsers) == 1 else self.parser).prog.replace(" [options]", "")
        # jsonargparse's usage line lists every option: a screenful above a one-line message.
        sys.stderr.write(f"usage: {prog} [options]  (`{prog} --help` lists them)\nerror: {message}\n")
        raise SystemExit(2)


def _instantiate(init: dict[str, Any], first_argument: Any) -> Any:
    """``class_path(first_argument, **init_args)``."""
    module_name, _, class_name = init["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(first_argument, **init.get("init_args", {}))


def _with_class_path(cls: type) -> Any:
    def class_path_and_arguments(init_args: Namespace) -> dict[str, Any]:
        arguments = init_args.as_dict() if isinstance(init_args, Namespace) else dict(init_args or {})
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": arguments}

    return class_path_and_arguments
