"""From ``__init__`` signatures to checked arguments: type hints, docstrings, class paths, YAML.

A value arrives as YAML (a config file, or one command-line word read with ``yaml.safe_load``) and is
checked against the parameter's type hint. A class-typed parameter takes ``{class_path, init_args}``,
kept as a ``ClassSpec`` until ``build`` instantiates it, so that the resolved config can still be printed.
"""

from __future__ import annotations

import collections.abc
import difflib
import enum
import importlib
import inspect
import os
import pkgutil
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

import yaml

_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
              collections.abc.Iterable, collections.abc.Collection)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_GOOGLE_HEADERS = {"Args:", "Arguments:", "Parameters:", "Params:"}
_NUMPY_HEADERS = {"Parameters", "Params", "Arguments", "Other Parameters"}
_GOOGLE_ENTRY = re.compile(r"\**(?P<name>\w+)\s*(?:\([^)]*\))?\s*:(?P<text>.*)$")  # name (type): text
_NUMPY_ENTRY = re.compile(r"(?P<name>\w+)\s*(?::.*)?$(?P<text>)")                 # name : type
_SPHINX_ENTRY = re.compile(r"^\s*:param\s+(?:[^:]+\s)?(\w+):(.*)$", re.MULTILINE)    # :param type name: text
# PyYAML reads "1e-3" as a string (YAML 1.1 wants a dot), so floats also accept this spelling.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)", re.IGNORECASE)


class ArgumentError(ValueError):
    """A value, class path or argument name that cannot be used; the message says which and why."""


class ClassPathError(ArgumentError):
    """A ``class_path`` entry whose class or arguments are wrong: no other reading of the value is tried."""


@dataclass
class ClassSpec:
    """A class and its checked ``__init__`` arguments, not instantiated yet."""

    cls: type
    init_args: dict[str, Any]


@dataclass
class Parameter:
    """One ``__init__`` parameter: its type hint, default (``inspect.Parameter.empty`` when required), description."""

    name: str
    hint: Any
    default: Any
    description: str

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def parameters_of(cls: type) -> dict[str, Parameter]:
    """The keyword-settable ``__init__`` parameters of ``cls``, described by its docstrings."""
    init = cls.__init__
    hints = _type_hints(init)
    # cls.__doc__, unlike inspect.getdoc, is not inherited: a base class's docstring would describe the wrong class.
    descriptions = {**parameter_descriptions(init.__doc__), **parameter_descriptions(cls.__doc__)}
    not_options = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD, inspect.Parameter.POSITIONAL_ONLY)
    found = {}
    for position, parameter in enumerate(inspect.signature(init).parameters.values()):
        if position == 0 or parameter.kind in not_options:  # position 0 is self
            continue
        hint = hints.get(parameter.name, Any)
        found[parameter.name] = Parameter(parameter.name, hint, parameter.default, descriptions.get(parameter.name, ""))
    return found


def _type_hints(function: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:
        pass
    # One annotation that cannot be evaluated (a name imported only under TYPE_CHECKING) must not cost the
    # others their types; that parameter alone is read as plain YAML.
    hints = {}
    for name, annotation in getattr(function, "__annotations__", {}).items():
        try:
            hints[name] = eval(annotation, function.__globals__) if isinstance(annotation, str) else annotation
        except Exception:
            continue
    return hints


def summary(cls: type) -> str:
    """The first line of the class's own docstring, or ''."""
    return inspect.cleandoc(cls.__doc__ or "").partition("\n")[0]


def parameter_descriptions(docstring: str | None) -> dict[str, str]:
    """Per-parameter text from a Google ("Args:"), NumPy ("Parameters" + dashes) or Sphinx (":param x:") docstring."""
    lines = inspect.cleandoc(docstring or "").splitlines()
    found = {match.group(1): match.group(2).strip() for match in _SPHINX_ENTRY.finditer("\n".join(lines))}
    underlined = [index + 1 < len(lines) and set(lines[index + 1].strip()) == {"-"} for index in range(len(lines))]
    entry_pattern, entry_indent, current = None, None, None  # entry_pattern is None outside a parameter section
    for index, line in enumerate(lines):
        text, indent = line.strip(), len(line) - len(line.lstrip())
        if text in _GOOGLE_HEADERS or (underlined[index] and text in _NUMPY_HEADERS):
            entry_pattern = _NUMPY_ENTRY if underlined[index] else _GOOGLE_ENTRY
            entry_indent = current = None
        elif entry_pattern is None or not text or set(text) == {"-"}:
            continue
        elif underlined[index] or (entry_pattern is _GOOGLE_ENTRY and indent == 0):
            entry_pattern = None  # the next section ("Returns:", or "Returns" over dashes) starts
        elif entry_indent is None or indent == entry_indent:  # the first entry sets the entries' indent
            entry_indent = indent
            match = entry_pattern.match(text)
            current = match.group("name") if match else None
            if match:
                found[current] = match.group("text").strip()
        elif current is not None:
            found[current] = f"{found[current]} {text}".strip()
    return found


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


def did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    """'; did you mean <prefix><closest>?' for the closest candidate, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def import_class(path: str | type, base: type) -> type:
    """The class at dotted ``path`` (or ``path`` itself when a class), which must subclass ``base``."""
    found = path if isinstance(path, type) else _import_dotted(path, base)
    if not (isinstance(found, type) and issubclass(found, base)):
        name = dotted_name(found) if isinstance(found, type) else path
        raise ArgumentError(f"{name} is not a {base.__name__} subclass")
    return found


def _import_dotted(path: Any, base: type) -> Any:
    if not isinstance(path, str) or "." not in path:
        raise ArgumentError(f"{path!r} is not a dotted class path like package.module.{base.__name__}")
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):  # the longest importable module, then attributes (nested classes)
        module_name = ".".join(parts[:split])
        try:
            found = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and (module_name + ".").startswith(error.name + "."):
                continue  # this prefix is not a module; a shorter one may be
            raise ArgumentError(f"importing {module_name} for {path} failed: {error}") from None
        for depth, attribute in enumerate(parts[split:]):
            if not hasattr(found, attribute):
                owner = ".".join(parts[:split + depth])
                classes = [name for name, value in vars(found).items()
                           if isinstance(value, type) and issubclass(value, base)]
                suggestion = did_you_mean(attribute, classes, owner + ".")
                raise ArgumentError(f"{owner} has no attribute {attribute!r}{suggestion}")
            found = getattr(found, attribute)
        return found
    top_level = [module.name for module in pkgutil.iter_modules()]
    raise ArgumentError(f"cannot import {path}: there is no module {parts[0]!r}{did_you_mean(parts[0], top_level)} "
                        "(a module must be installed, or in the current directory)")


def dotted_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def init_arguments(cls: type, given: Mapping[str, Any], option_prefix: str = "") -> dict[str, Any]:
    """Every ``__init__`` argument of ``cls``: ``given`` ones checked against the hints, defaults for the rest.

    ``option_prefix`` (``--model.``) turns the fixes named in messages into command-line options.
    """
    parameters = parameters_of(cls)
    for name in given:
        if name not in parameters:
            raise ArgumentError(f"{cls.__qualname__} has no argument {name!r}{did_you_mean(name, parameters)}")
    arguments = {}
    for name, parameter in parameters.items():
        if name not in given:
            if parameter.required:
                fix = (f"pass {option_prefix}{name} VALUE or set it in a --config file" if option_prefix
                       else "set it under init_args")
                kind = type_name(parameter.hint)
                raise ArgumentError(f"{cls.__qualname__} needs {name} ({kind}), which has no default: {fix}")
            arguments[name] = parameter.default
        elif given[name] is None and parameter.default is None:  # `x: int = None`, an implicit Optional
            arguments[name] = None
        else:
            try:
                arguments[name] = coerce(given[name], parameter.hint)
            except ArgumentError as error:
                raise ArgumentError(f"{option_prefix or cls.__qualname__ + '.'}{name}: {error}") from None
    return arguments


def class_spec(value: Mapping[str, Any], base: type) -> ClassSpec:
    """``{class_path: ..., init_args: {...}}`` checked against the class found there."""
    unexpected = sorted(set(value) - {"class_path", "init_args"})
    if unexpected:
        raise ClassPathError(
            f"unexpected {', '.join(unexpected)} next to class_path: put the arguments under init_args"
        )
    init_args = value.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise ClassPathError(f"init_args of {value['class_path']} must be a mapping of argument names to values")
    try:
        cls = import_class(value["class_path"], base)
        return ClassSpec(cls, init_arguments(cls, init_args))
    except ArgumentError as error:
        raise ClassPathError(str(error)) from None


def parse_text(text: str, hint: Any) -> Any:
    """One command-line word for a parameter hinted ``hint``: read as YAML, then checked."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        loaded = text
    return coerce(loaded, hint, text)


def coerce(value: Any, hint: Any, text: str | None = None) -> Any:
    """``value`` checked against ``hint`` (converted where lossless: int to float, list to tuple).

    ``text`` is the command-line word ``value`` was read from: a ``str`` parameter takes it as typed,
    so that ``--data.name 3`` gives ``"3"``. Raises ``ArgumentError`` when the value does not fit.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    container = origin or hint
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, typing.TypeVar):
        return value
    if origin in (Union, types.UnionType):
        for member in sorted(args, key=_trial_order):
            try:
                return coerce(value, member, text)
            except ClassPathError:
                raise
            except ArgumentError:
                continue
    elif hint is type(None) or hint is None:
        if value is None:
            return None
    elif origin is Literal:
        for choice in args:
            if (type(value) is type(choice) and value == choice) or (text is not None and text == str(choice)):
                return choice
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
        if text is not None:
            return text
    elif container in _SEQUENCES and isinstance(container, type):
        if isinstance(value, (list, tuple)):
            return _coerce_sequence(value, container, args)
    elif container in _MAPPINGS and isinstance(container, type):
        if isinstance(value, Mapping):
            key_hint, value_hint = args or (Any, Any)
            return {coerce(key, key_hint): coerce(item, value_hint) for key, item in value.items()}
    elif isinstance(hint, type):
        return _coerce_object(value, hint)
    else:  # a typing construct this parser does not model (Callable, a Protocol, ...): taken as given
        return value
    raise ArgumentError(f"expected {type_name(hint)}, got {text if text is not None else value!r}")


def _trial_order(member: Any) -> int:
    # The most specific reading first; str last, since a command-line word is always a string.
    order = {type(None): 0, bool: 1, int: 2, float: 3, str: 9}
    if member in order:
        return order[member]
    return 4 if typing.get_origin(member) is Literal else 5


def _coerce_sequence(value: list | tuple, container: type, args: tuple) -> Any:
    if container is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ArgumentError(f"expected {len(args)} items, got {len(value)}")
        return tuple(coerce(item, hint) for item, hint in zip(value, args))
    items = [coerce(item, args[0] if args else Any) for item in value]
    if container is tuple:
        return tuple(items)
    return set(items) if container in (set, frozenset) else items


def _coerce_object(value: Any, cls: type) -> Any:
    if isinstance(value, cls) or (isinstance(value, ClassSpec) and issubclass(value.cls, cls)):
        return value
    if isinstance(value, Mapping) and "class_path" in value:
        return class_spec(value, cls)
    if issubclass(cls, enum.Enum):
        if isinstance(value, str) and value in cls.__members__:
            return cls[value]
        raise ArgumentError(f"expected one of {', '.join(cls.__members__)}, got {value!r}")
    if isinstance(value, str) and issubclass(cls, os.PathLike):
        return value if inspect.isabstract(cls) else cls(value)
    raise ArgumentError(f"expected {type_name(cls)} (a mapping with class_path and init_args), got {value!r}")


def build(value: Any) -> Any:
    """``value`` with every ``ClassSpec`` in it instantiated, innermost first."""
    if isinstance(value, ClassSpec):
        return value.cls(**{name: build(argument) for name, argument in value.init_args.items()})
    if isinstance(value, (list, tuple, set)):
        return type(value)(build(item) for item in value)
    if isinstance(value, dict):
        return {key: build(item) for key, item in value.items()}
    return value


def to_yaml(value: Any) -> Any:
    """``value`` as plain YAML data: a ``ClassSpec`` as ``{class_path, init_args}``, tuples as lists."""
    if isinstance(value, ClassSpec):
        return {"class_path": dotted_name(value.cls), "init_args": to_yaml(value.init_args)}
    if isinstance(value, Mapping):
        return {key: to_yaml(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_yaml(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    # An object given in Python (a default, trainer_defaults): shown, but a config cannot rebuild it.
    return repr(value)
