"""The one converter and loader behind every config schema (base model, super-resolution).

A schema is a tree of dataclasses. `build(cls, mapping, where)` checks a parsed YAML
mapping against it: unknown keys and values of the wrong type are `ConfigError`s naming
the key path (`train.loss_weights.l1`). The type rules, the same for every schema:

- `bool`: true/false only (not 0/1);
- `int`: an integer (not a bool, not 2.0);
- `float`: an integer or a number (YAML's `5e2` without a dot is a string: write `!!float 5e2`);
- `str`: a string;
- `list[T]`: a list of T; a nested dataclass: a mapping;
- a union (`str | bool`, `T | None`): null where None is allowed, else the first member that fits.

A dataclass may take keys outside its fields (named blocks) with a `config_extra(kwargs,
extra)` static method; whatever it leaves in `extra` is an unknown key.
`read_yaml(path)` reads a file once, at the edge; `parse_mapping` names the file in errors.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from talkingface.errors import ConfigError

T = TypeVar("T")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def convert(value: Any, tp: Any, where: str) -> Any:
    """`value` as type `tp` under the rules above; `where` names the key in errors."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        first_error = None
        for member in inner:
            try:
                return convert(value, member, where)
            except ConfigError as e:
                first_error = first_error or e
        raise first_error
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return build(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")  # a schema bug, not user input


def convert_fields(cls, data: dict, where: str) -> dict[str, Any]:
    """The entries of `data` that are fields of dataclass `cls`, converted; other keys are left out."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: convert(value, hints[key], f"{where}.{key}" if where else str(key))
            for key, value in data.items() if key in names}


def build(cls: type[T], data: dict, where: str) -> T:
    """An instance of dataclass `cls` from a mapping; unknown keys are errors."""
    names = {f.name for f in dataclasses.fields(cls)}
    extras_hook = getattr(cls, "config_extra", None)
    fields = {k: v for k, v in data.items() if k in names and not (extras_hook and k == "blocks")}
    kwargs = convert_fields(cls, fields, where)
    extra = {key: (f"{where}.{key}" if where else str(key), value) for key, value in data.items()
             if key not in fields}
    if extras_hook is not None:
        extras_hook(kwargs, extra)
    if extra:
        path, _ = next(iter(extra.values()))
        raise ConfigError(f"unknown key '{path}'")
    return cls(**kwargs)


def parse_mapping(data: dict | None, source: str, parse: Callable[[dict], T]) -> T:
    """`parse(data)` for a file's top level; errors name `source` (the file)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", source)
    try:
        return parse(data)
    except ConfigError as e:
        raise ConfigError(e.message, source) from None


def read_yaml(path: str | Path) -> Any:
    """A config file's parsed YAML; missing, unreadable, invalid or empty files are ConfigErrors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"not valid YAML{where}", path) from None
    except UnicodeDecodeError as e:  # a binary file, or one damaged
        raise ConfigError(f"not a YAML text file (byte {e.start} is not UTF-8 text)", path) from None
    except OSError as e:
        raise ConfigError(f"cannot read ({e})", path) from None
    if data is None:  # nothing but blanks and comments
        raise ConfigError("empty config file", path)
    return data
