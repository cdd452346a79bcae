"""The ``tribus`` command line, in the style of LightningCLI: ``tribus fit --model pkg.Net --trainer.max_epochs 3``.

The options come from the ``__init__`` signatures of the chosen LightningModule, LightningDataModule and
Trainer. Values are layered, later wins: signature defaults (and ``trainer_defaults``), each ``--config``
file in order, then the other command-line options. The user's guide is docs/cli.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from engineering.cli.arguments import (
    ArgumentError, ClassSpec, Parameter, build, coerce, did_you_mean, dotted_name, import_class, init_arguments,
    parameters_of, parse_text, summary, to_yaml, type_name,
)
from engineering.seed import seed_everything
from engineering.trainer import Trainer
from research import LightningDataModule, LightningModule

SUBCOMMANDS = {
    "fit": "train the model; --ckpt_path resumes a run",
    "validate": "one pass over the validation data",
    "test": "one pass over the test data",
    "predict": "predict_step over the predict data",
}
CONFIG_FILENAME = "config.yaml"
_DESCRIPTION = """\
Options come from the __init__ signatures of --model, --data and the Trainer. Later wins: defaults,
then each --config file in order, then the other options. Values are YAML: true, null, [0, 1], 1e-3."""
_CLASS_SECTIONS = ("model", "data")
_EXAMPLE_MODEL = "research.mnist.MNISTClassifier"


class LightningCLI:
    """Parse the command line, build the model, datamodule and Trainer, and run the subcommand.

    ``model_class`` / ``datamodule_class`` are the defaults of ``--model`` / ``--data``, and the base classes
    they must subclass. With ``run=False`` there is no subcommand: the objects are built and left to the
    caller (``cli.trainer.fit(cli.model, datamodule=cli.datamodule)``), and ``cli.save_config()`` is the
    caller's to call. A usage error exits with status 2 and a message naming the fix, as argparse does.
    """

    def __init__(
        self,
        model_class: type[LightningModule] | None = None,
        datamodule_class: type[LightningDataModule] | None = None,
        trainer_class: type[Trainer] = Trainer,
        trainer_defaults: Mapping[str, Any] | None = None,
        seed_everything_default: bool | int = True,
        save_config: bool = True,
        args: Sequence[str] | None = None,
        run: bool = True,
        prog: str | None = None,
    ) -> None:
        self._bases = {"model": model_class or LightningModule, "data": datamodule_class or LightningDataModule}
        self._default_classes = {"model": model_class, "data": datamodule_class}
        self.trainer_class = trainer_class
        self.trainer_defaults = dict(trainer_defaults or {})
        self.seed_everything_default = seed_everything_default
        arguments = list(sys.argv[1:] if args is None else args)
        prog = prog or os.path.basename(sys.argv[0])
        self.subcommand = _take_subcommand(arguments, prog) if run else None
        self.parser = _class_choice_parser(f"{prog} {self.subcommand}" if run else prog)
        try:
            self.config, options = self._parse(arguments)
        except ArgumentError as error:
            self.parser.error(str(error))
        if options.get("print_config"):
            sys.stdout.write(self.config_as_yaml())
            raise SystemExit(0)
        self._seed()
        self.model: LightningModule = build(self.config["model"])
        self.datamodule: LightningDataModule | None = build(self.config["data"])
        try:
            self.trainer: Trainer = trainer_class(**build(self.config["trainer"]))
        except (ValueError, TypeError) as error:  # the Trainer's own checks, whose messages name the fix
            self.parser.error(f"the Trainer refused its arguments: {error}")
        if run:
            self._run(save_config, overwrite_config=options.get("overwrite_config", False))

    # ---------------------------------------------------------------------------------------------
    # The config: defaults, then --config files, then command-line options
    # ---------------------------------------------------------------------------------------------
    def _parse(self, arguments: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the resolved config and the options that are not part of it (print_config, ...)."""
        # Which classes are chosen decides which options exist, so they are found first.
        chosen, _ = self.parser.parse_known_args(arguments)
        layered = self._defaults()
        for path in getattr(chosen, "config", []):
            _merge_layer(layered, _read_config(path), f"--config {path}")
        for section in _CLASS_SECTIONS:
            if hasattr(chosen, section):
                _merge_layer(layered, {section: {"class_path": getattr(chosen, section)}}, f"--{section}")
        classes = {section: self._class_of(section, layered[section]["class_path"]) for section in _CLASS_SECTIONS}

        parser = self._full_parser(classes)
        given, unknown = parser.parse_known_args(arguments)
        if unknown:
            raise ArgumentError(self._explain_unknown(unknown, parser, classes))
        options = vars(given)
        for key, value in options.items():
            section, _, name = key.partition(".")
            if name:
                (layered[section]["init_args"] if section in _CLASS_SECTIONS else layered[section])[name] = value
            elif key in layered and key not in _CLASS_SECTIONS:
                layered[key] = value
        return self._resolve(layered, classes), options

    def _defaults(self) -> dict[str, Any]:
        layered = {
            "seed_everything": self.seed_everything_default,
            "trainer": dict(self.trainer_defaults),
            "model": {"class_path": self._default_classes["model"], "init_args": {}},
            "data": {"class_path": self._default_classes["data"], "init_args": {}},
        }
        if self.subcommand:
            layered["ckpt_path"] = None
        return layered

    def _class_of(self, section: str, class_path: Any) -> type | None:
        if class_path is None:
            return None
        try:
            return import_class(class_path, self._bases[section])
        except ArgumentError as error:
            other = "data" if section == "model" else "model"
            hint = f"; pass it with --{other}" if _imports_as(class_path, self._bases[other]) else ""
            raise ArgumentError(f"--{section} {class_path}: {error}{hint}") from None

    def _resolve(self, layered: dict[str, Any], classes: dict[str, type | None]) -> dict[str, Any]:
        if classes["model"] is None:
            raise ArgumentError(f"no model chosen: pass --model package.module.YourModule (for example --model "
                                f"{_EXAMPLE_MODEL}), or set model.class_path in a --config file")
        config: dict[str, Any] = {
            "seed_everything": _checked("seed_everything", layered["seed_everything"], bool | int),
        }
        config["trainer"] = init_arguments(self.trainer_class, layered["trainer"], "--trainer.")
        for section in _CLASS_SECTIONS:
            cls = classes[section]
            init_args = layered[section]["init_args"]
            config[section] = ClassSpec(cls, init_arguments(cls, init_args, f"--{section}.")) if cls else None
        if "ckpt_path" in layered:
            config["ckpt_path"] = _checked("ckpt_path", layered["ckpt_path"], str | None)
        return config

    # ---------------------------------------------------------------------------------------------
    # Options and help
    # ---------------------------------------------------------------------------------------------
    def _full_parser(self, classes: dict[str, type | None]) -> argparse.ArgumentParser:
        """Every option of this subcommand, typed by the signatures; argparse's help is built from it."""
        parser = argparse.ArgumentParser(
            prog=self.parser.prog, usage=self.parser.usage, parents=[self.parser], allow_abbrev=False,
            argument_default=argparse.SUPPRESS, description=_DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--print_config", action="store_true",
                            help="print the resolved config as YAML (the form --config reads) and exit")
        seed_default = _inline(self.seed_everything_default)
        parser.add_argument("--seed_everything", type=_word_parser(bool | int), metavar="SEED",
                            help="an int seeds python, numpy and torch; true picks a random seed and records it "
                                 f"in config.yaml; false seeds nothing (default: {seed_default})")
        if self.subcommand:
            parser.add_argument("--ckpt_path", type=_word_parser(str | None), metavar="PATH",
                                help='a checkpoint file, or "best" / "last" (default: null)')
            parser.add_argument("--overwrite_config", action="store_true",
                                help=f"replace an existing {CONFIG_FILENAME} in the log directory")
        for section, cls in self._sections(classes):
            group = parser.add_argument_group(f"{section} ({cls.__qualname__})", summary(cls) or None)
            defaults = self.trainer_defaults if section == "trainer" else {}
            for parameter in parameters_of(cls).values():
                group.add_argument(f"--{section}.{parameter.name}", type=_word_parser(parameter.hint), metavar="VALUE",
                                   help=_help(parameter, defaults.get(parameter.name, parameter.default)))
        return parser

    def _sections(self, classes: dict[str, type | None]) -> list[tuple[str, type]]:
        chosen = [(section, classes[section]) for section in _CLASS_SECTIONS if classes[section] is not None]
        return chosen + [("trainer", self.trainer_class)]

    def _explain_unknown(self, unknown: list[str], parser: argparse.ArgumentParser, classes: dict[str, Any]) -> str:
        word = next((word for word in unknown if word.startswith("-")), unknown[0])
        if not word.startswith("-"):
            return f"unexpected value {word!r}: every value follows its option, as in --trainer.max_epochs 3"
        option = word.partition("=")[0]
        section, dot, _ = option[2:].partition(".")
        if dot and section in _CLASS_SECTIONS and classes[section] is None:
            return (f"{option} sets an argument of the {section} class, but none is chosen: "
                    f"pass --{section} package.module.Class")
        known = [f"--{section}.{name}" for section, cls in self._sections(classes) for name in parameters_of(cls)]
        known += ["--config", "--model", "--data", "--print_config", "--seed_everything", "--ckpt_path",
                  "--overwrite_config"]
        return f"unrecognized argument {option}{did_you_mean(option, known)} (`{parser.prog} --help` lists them)"

    # ---------------------------------------------------------------------------------------------
    # Running
    # ---------------------------------------------------------------------------------------------
    def _seed(self) -> None:
        seed = self.config["seed_everything"]
        if seed is True:
            seed = secrets.randbelow(2**32)  # not `random`: it may have been seeded alike by an earlier run
        if seed is not False:
            try:
                self.config["seed_everything"] = seed_everything(seed, workers=True)
            except ValueError as error:
                self.parser.error(f"--seed_everything: {error}")

    def _run(self, save_config: bool, overwrite_config: bool) -> None:
        # Every rank knows its rank from the environment before fit; only global rank 0 writes.
        if save_config and self.trainer.is_global_zero:
            try:
                self.save_config(overwrite=overwrite_config)
            except FileExistsError as error:
                self.parser.error(str(error))
        run = getattr(self.trainer, self.subcommand)
        run(self.model, datamodule=self.datamodule, ckpt_path=self.config["ckpt_path"])

    def config_as_yaml(self) -> str:
        """The resolved config, in the form ``--config`` reads back."""
        return yaml.safe_dump(to_yaml(self.config), sort_keys=False)

    def save_config(self, overwrite: bool = False) -> str:
        """Write ``config.yaml`` into ``trainer.log_dir``, unless one exists and not ``overwrite``; return its path."""
        path = os.path.join(self.trainer.log_dir, CONFIG_FILENAME)
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(
                f"{path} already exists, from an earlier run: pass --overwrite_config (save_config(overwrite=True) "
                "in Python) to replace it, or choose another directory with --trainer.default_root_dir"
            )
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as file:
            file.write(self.config_as_yaml())
        return path


def main(args: Sequence[str] | None = None) -> None:
    """The ``tribus`` console script, also ``python -m engineering.cli``."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        # A console script's sys.path starts at its bin/ directory; `--model my_models.Net` should import from here.
        sys.path.insert(0, os.getcwd())
    LightningCLI(args=args, prog="tribus")


def _take_subcommand(arguments: list[str], prog: str) -> str:
    """Remove and return the subcommand, the first word; help and errors for a missing or wrong one."""
    listing = "\n".join(f"  {name:<10}{text}" for name, text in SUBCOMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=prog, usage=f"{prog} {{{','.join(SUBCOMMANDS)}}} [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and evaluate a LightningModule from the command line.",
        epilog=f"subcommands:\n{listing}\n\n`{prog} fit --help` lists a subcommand's options; "
               f"add --model package.module.Class to see the model's.",
    )
    if arguments and arguments[0] in SUBCOMMANDS:
        return arguments.pop(0)
    if not arguments:
        parser.error(f"choose a subcommand: {', '.join(SUBCOMMANDS)} (`{prog} --help` describes them)")
    if arguments[0] in ("-h", "--help"):
        parser.print_help()
        raise SystemExit(0)
    parser.error(f"unknown subcommand {arguments[0]!r}{did_you_mean(arguments[0], SUBCOMMANDS)} "
                 f"(choose one of {', '.join(SUBCOMMANDS)})")


def _class_choice_parser(prog: str) -> argparse.ArgumentParser:
    """The options that choose classes and files; also the parser that reports every usage error."""
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} [--config FILE] [--model CLASS] [--data CLASS] [--SECTION.ARGUMENT VALUE ...] [--help]",
        add_help=False, allow_abbrev=False, argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", action="append", metavar="FILE",
                        help="a YAML config, as --print_config writes it; repeat it to layer several, later wins")
    parser.add_argument("--model", metavar="CLASS",
                        help=f"the LightningModule, as a dotted path (e.g. {_EXAMPLE_MODEL}); "
                             "--help after it lists its arguments")
    parser.add_argument("--data", metavar="CLASS", help="the LightningDataModule, as a dotted path (optional)")
    return parser


def _merge_layer(layered: dict[str, Any], layer: Mapping[str, Any], source: str) -> None:
    """Fold one config (a file, or the class options) into ``layered``."""
    for key, value in layer.items():
        if key not in layered:
            raise ArgumentError(f"{source}: unknown key {key!r}{did_you_mean(key, layered)} "
                                f"(a config has the keys {', '.join(layered)})")
        if key in _CLASS_SECTIONS:
            _merge_class_entry(layered[key], value, f"{source}: {key}")
        elif key == "trainer":
            if not isinstance(value, Mapping):
                raise ArgumentError(f"{source}: trainer must be a mapping of Trainer arguments, got {value!r}")
            layered["trainer"].update(value)
        else:
            layered[key] = value


def _merge_class_entry(entry: dict[str, Any], value: Any, where: str) -> None:
    """Fold a config's ``model:`` / ``data:`` value into ``entry``; a different class drops the earlier init_args."""
    if value is None:
        entry.update(class_path=None, init_args={})
        return
    if isinstance(value, str):
        value = {"class_path": value}
    if not isinstance(value, Mapping):
        raise ArgumentError(f"{where} must be a dotted class path, or a mapping with class_path and init_args")
    if "class_path" in value:
        unexpected = sorted(set(value) - {"class_path", "init_args"})
        if unexpected:
            raise ArgumentError(
                f"{where}: unexpected {', '.join(unexpected)} next to class_path: put them under init_args"
            )
        if _path_of(value["class_path"]) != _path_of(entry["class_path"]):
            entry["init_args"] = {}
        entry["class_path"] = value["class_path"]
        value = value.get("init_args") or {}
    if not isinstance(value, Mapping):
        raise ArgumentError(f"{where}: init_args must be a mapping of argument names to values")
    entry["init_args"].update(value)  # the short form `model: {lr: 0.1}` sets the arguments alone


def _path_of(class_path: Any) -> Any:
    return dotted_name(class_path) if isinstance(class_path, type) else class_path


def _imports_as(class_path: Any, base: type) -> bool:
    try:
        import_class(class_path, base)
    except ArgumentError:
        return False
    return True


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(path) as file:
            loaded = yaml.safe_load(file)
    except OSError as error:
        raise ArgumentError(f"--config {path}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ArgumentError(f"--config {path} is not valid YAML: {error}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ArgumentError(f"--config {path} must be a mapping with keys such as trainer, model, data")
    return loaded or {}


def _checked(name: str, value: Any, hint: Any) -> Any:
    try:
        return coerce(value, hint)
    except ArgumentError as error:
        raise ArgumentError(f"{name}: {error}") from None


def _word_parser(hint: Any) -> Any:
    def parse(text: str) -> Any:
        try:
            return parse_text(text, hint)
        except ArgumentError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _help(parameter: Parameter, default: Any) -> str:
    kind = type_name(parameter.hint)
    required = parameter.required and default is parameter.default  # trainer_defaults may give it a value
    shown = f"{kind}, required" if required else f"{kind}, default: {_inline(default)}"
    text = f"{parameter.description} ({shown})" if parameter.description else f"({shown})"
    return text.replace("%", "%%")  # argparse formats help with %


def _inline(value: Any) -> str:
    return yaml.safe_dump(to_yaml(value), default_flow_style=True, width=10_000).removesuffix("...\n").strip()
