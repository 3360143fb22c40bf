"""Frozen dataclasses built from parsed YAML, with their type hints as the schema.

Walks `dataclasses.fields` and `typing.get_type_hints`, so a new config field needs no
validation code of its own. Every problem names its dotted path and what was expected:
`routes[1].qos: expected 0, 1 or 2, got 'x'`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal


class ConfigError(Exception):
    """A config problem, worded for one line on a console: `path: expected X, got Y`."""


def build(cls: type[Any], raw: object, path: str, skip: tuple[str, ...] = ()) -> Any:
    """An instance of dataclass `cls` from `raw`; fields named in `skip` are not read."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or '(top level)'}: expected a mapping, got {describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in skip}
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{_join(path, str(key))}: unknown key (expected one of: {known})")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        where = _join(path, name)
        if name in raw:
            values[name] = _convert(hints[name], raw[name], where)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: required key is missing")
    return cls(**values)


def _convert(hint: Any, value: object, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            try:
                return _convert(options[0], value, path)
            except ConfigError as error:
                if value is not None and dataclasses.is_dataclass(options[0]):
                    raise
                raise ConfigError(f"{error} (or null)") from None
        raise ConfigError(f"{path}: unsupported union in schema")  # pragma: no cover
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return value
        # YAML reads 3.1.1 as a string but 5 as an int; accept "5" spelled as a string too.
        for choice in args:
            if isinstance(value, str) and str(choice) == value:
                return choice
        raise ConfigError(f"{path}: expected {_choices(args)}, got {describe(value)}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {describe(value)}")
        return tuple(
            _convert(args[0], item, f"{path}[{index}]") for index, item in enumerate(value)
        )
    if dataclasses.is_dataclass(hint):
        return build(typing.cast(type[Any], hint), value, path)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {describe(value)}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {describe(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {describe(value)}")
    raise ConfigError(f"{path}: unsupported type in schema: {hint!r}")  # pragma: no cover


def _choices(args: tuple[Any, ...]) -> str:
    shown = [repr(arg) if isinstance(arg, str) else str(arg) for arg in args]
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


def describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
