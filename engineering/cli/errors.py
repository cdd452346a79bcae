"""jsonargparse's error messages, retold as one line that names the fix.

jsonargparse explains a rejected value by listing every reading it tried (each member of a Union, each
class path). The line that matters is usually the innermost one; ``explain`` finds it, then says what to type
instead: the closest valid option or key, the expected type, the class path that imports. A message it does
not recognise is passed on unchanged, so a new jsonargparse wording costs precision, never the error.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import re
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, Union

import torch

from research import LightningDataModule, LightningModule

_EXAMPLE_MODEL = "research.mnist.MNISTClassifier"
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (?P<words>.*)", re.DOTALL)
_UNEXPECTED_KEY = re.compile(
    r"does not accept (?:option|key) '(?P<key>[^']+)'|Key \"(?P<other>[^\"]+)\" is not expected")
_BEFORE_SUBCOMMAND = re.compile(r"Option '(?P<key>[^']+)' is not accepted before subcommand '(?P<subcommand>\w+)'")
_PARSER_KEY = re.compile(r'Parser key "(?P<key>[^"]+)"')
_CLASS_PROBLEM = re.compile(r"Problem with given class_path '(?P<path>[^']+)':")
_SUBTYPE = re.compile(r"Subtypes: \[<class '(?P<path>[\w.]+)'>")
_NOT_ACCEPTED = re.compile(r"Option '(?P<name>[^']+)' is not accepted")
_REQUIRED = re.compile(r"the following arguments are required: (?P<names>[\w., ]+)")
_NOT_SUBCLASS = re.compile(r"does not correspond to a subclass of (?P<base>\w+)")
_GIVEN = re.compile(r"(?:Given value|Got value): (?:NestedArg\(key='[^']*', val=(?P<nested>.*)\)|(?P<value>.*))")
_MISSING_FILE = re.compile(r"File does not exist: '(?P<path>[^']+)'")
_BAD_CHOICE = re.compile(r"invalid choice: '(?P<word>[^']*)' \(choose from (?P<choices>[^)]*)\)")
_NO_SUBCOMMAND = re.compile(r"expected \"subcommand\" to be one of \{(?P<choices>[^}]*)\}")
_IMPORT_FAILURE = re.compile(r"has no attribute|No module named|not accessible or invalid")
_SECTION_BASES = {"model": LightningModule, "data": LightningDataModule}
# The bases jsonargparse falls back to when no class was chosen for their option.
_CHOSEN_BY_CLASS_PATH = (LightningModule, LightningDataModule, torch.optim.Optimizer,
                         torch.optim.lr_scheduler.LRScheduler)


def explain(message: str, parsers: list[Any]) -> str:
    """One line for jsonargparse's ``message``; ``parsers`` are those it may come from, for their option names."""
    match = _BAD_CHOICE.search(message) or _NO_SUBCOMMAND.search(message)
    if match:
        return _subcommand_problem(match)
    match = _UNRECOGNIZED.search(message)
    if match:
        return _unrecognized(match["words"].split(), parsers)
    match = _BEFORE_SUBCOMMAND.search(message)
    if match:
        subcommand = match["subcommand"]
        return (f"{match['key']} is given before the subcommand, where a config holds one section per subcommand: "
                f"put --config after {subcommand!r}, or nest the file's keys under '{subcommand}:'")
    match = _UNEXPECTED_KEY.search(message)
    if match:
        key = match["key"] or match["other"]
        return f"unknown key {key!r} in the config{did_you_mean(key, _keys(parsers))} (`--print_config` shows them)"
    match = _MISSING_FILE.search(message)
    if match:
        return f"--config {match['path']}: there is no such file"
    outer = _PARSER_KEY.search(message)
    key = outer["key"] if outer else ""
    problems = list(_CLASS_PROBLEM.finditer(message))
    if problems:  # the innermost class, when one class's argument is another class
        innermost = problems[-1]
        base = _expected_base(message[:innermost.start()])
        return _class_problem(key, innermost["path"], message[innermost.end():], base)
    match = _NOT_SUBCLASS.search(message)
    given = _given(message)
    if match and given is not None:
        return _not_a_subclass(given, match["base"])
    match = _REQUIRED.search(message)
    if match:
        return _required(match["names"].split(",")[0].strip())
    if outer and given is not None:
        return f"--{key}: expected {_expected(key, parsers)}, got {given!r}"
    return message.strip()


def did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    """'; did you mean <prefix><closest>?' for the closest candidate, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def type_name(hint: Any) -> str:
    """A short readable name for a type hint: ``int | None``, ``list[int]``, ``'fit' | 'test'``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def _subcommand_problem(match: re.Match) -> str:
    choices = [choice.strip(" '\"") for choice in match["choices"].split(",")]
    listing = ", ".join(choices)
    if "word" not in match.groupdict():
        return f"choose a subcommand: {listing} (`--help` describes them)"
    word = match["word"]
    return f"unknown subcommand {word!r}{did_you_mean(word, choices)} (choose one of {listing})"


def _unrecognized(words: list[str], parsers: list[Any]) -> str:
    option = next((word for word in words if word.startswith("-")), None)
    if option is None:
        return f"unexpected value {words[0]!r}: every value follows its option, as in --trainer.max_epochs 3"
    option = option.partition("=")[0]
    known = {string for parser in parsers for string in parser._option_string_actions if string.startswith("--")}
    return f"unrecognized argument {option}{did_you_mean(option, known)} (`--help` lists the options)"


def _given(text: str) -> str | None:
    """The first value jsonargparse says it was given, as the user typed it."""
    match = _GIVEN.search(text)
    if match is None:
        return None
    value = match["nested"] if match["nested"] is not None else match["value"]
    return value.strip().strip("'")


def _keys(parsers: list[Any]) -> set[str]:
    return {action.dest for parser in parsers for action in parser._actions if action.dest}


def _expected(key: str, parsers: list[Any]) -> str:
    for parser in parsers:
        for action in parser._actions:
            if action.dest == key and getattr(action, "_typehint", None) is not None:
                return type_name(action._typehint)
    return "another value"


def _expected_base(before: str) -> type:
    """The class jsonargparse expected where the innermost class path was given: the last one it names before it."""
    subtypes = list(_SUBTYPE.finditer(before))
    expected = _import(subtypes[-1]["path"]) if subtypes else None
    return expected if isinstance(expected, type) else object


def _class_problem(key: str, class_path: str, reason: str, base: type) -> str:
    """A class path that does not import, or arguments its class does not take."""
    option = f"--{key}" if key else "init_args"
    if _IMPORT_FAILURE.search(reason):
        return import_problem(class_path, base)
    cls = _import(class_path)
    name = getattr(cls, "__qualname__", class_path)
    match = _NOT_ACCEPTED.search(reason)
    if match and match["name"] == "class_path":
        return f"{option}: unexpected keys next to class_path: put the class's arguments under init_args"
    if match and cls in _CHOSEN_BY_CLASS_PATH:
        return (f"--{key}.{match['name']} sets an argument of the {key} class, but none is chosen: "
                f"pass --{key} package.module.Class")
    if match:
        return f"{name} has no argument {match['name']!r}{did_you_mean(match['name'], _parameters(cls))}"
    match = _REQUIRED.search(reason)
    if match:
        argument = match["names"].split(",")[0].strip()
        hint = _parameters(cls).get(argument)
        kind = f" ({type_name(hint)})" if hint is not None else ""
        return (f"{name} needs {argument}{kind}, which has no default: pass {option}.{argument} VALUE "
                "or set it in a --config file")
    inner = _PARSER_KEY.search(reason)
    given = _given(reason)
    if inner and given is not None:
        hint = _parameters(cls).get(inner["key"])
        expected = type_name(hint) if hint is not None else "another value"
        return f"{option}.{inner['key']}: expected {expected}, got {given!r}"
    return f"{option} {class_path}: {' '.join(reason.split())}"


def _not_a_subclass(class_path: str, base_name: str) -> str:
    message = f"{class_path} is not a {base_name} subclass"
    found = _import(class_path)
    for section, base in _SECTION_BASES.items():
        if base.__name__ != base_name and isinstance(found, type) and issubclass(found, base):
            message += f"; pass it with --{section}"
    return message


def _required(key: str) -> str:
    section = key.rpartition(".")[2]  # "fit.model" with subcommands
    if section == "model":
        return (f"no model chosen: pass --model package.module.YourModule (for example --model {_EXAMPLE_MODEL}), "
                "or set model.class_path in a --config file")
    return f"{section} is required: pass --{section} VALUE or set it in a --config file"


def import_problem(path: str, base: type) -> str:
    """Why dotted ``path`` does not import, with the closest module or attribute that does."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):  # the longest importable module, then attributes (nested classes)
        module_name = ".".join(parts[:split])
        try:
            found = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and (module_name + ".").startswith(error.name + "."):
                continue  # this prefix is not a module; a shorter one may be
            return f"importing {module_name} for {path} failed: {error}"
        except Exception as error:  # the module itself raised while importing: show why
            return f"importing {module_name} for {path} failed: {type(error).__name__}: {error}"
        for depth, attribute in enumerate(parts[split:]):
            if not hasattr(found, attribute):
                owner = ".".join(parts[:split + depth])
                names = getattr(found, "__all__", None) or list(vars(found))  # a package's lazy names too
                classes = {name: value for name in names if isinstance(value := getattr(found, name, None), type)}
                fitting = [name for name, value in classes.items() if issubclass(value, base)]
                # A class of the expected kind first; then any class of the module.
                prefix = owner + "."
                suggestion = did_you_mean(attribute, fitting, prefix) or did_you_mean(attribute, classes, prefix)
                return f"{owner} has no attribute {attribute!r}{suggestion}"
            found = getattr(found, attribute)
        return f"{path} is not a {base.__name__} subclass"
    top_level = [module.name for module in pkgutil.iter_modules()]
    return (f"cannot import {path}: there is no module {parts[0]!r}{did_you_mean(parts[0], top_level)} "
            "(a module must be installed, or in the current directory)")


def _import(path: str) -> Any:
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _parameters(cls: Any) -> dict[str, Any]:
    """``__init__`` parameter names of ``cls`` and their type hints (``Any`` where a hint does not evaluate)."""
    if not isinstance(cls, type):
        return {}
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation naming something imported only for type checkers
        hints = {}
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {parameter.name: hints.get(parameter.name, Any) for parameter in parameters
            if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)}
