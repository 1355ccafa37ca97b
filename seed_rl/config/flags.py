"""absl flags generated from the configuration dataclasses, and those dataclasses from dicts.

Each dataclass field becomes a flag of the same name whose default is ``None``,
meaning "the dataclass default" (where the source of each value is cited).
Agents that share a field name (``batch_size``, ``unroll_length``) share the
flag, and each agent keeps its own default. A field whose type is itself a
dataclass (``EnvConfig.dmlab``) contributes that dataclass's fields as flags,
flat, under their own names.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from absl import flags

_DEFINERS = {
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_boolean,
    str: flags.DEFINE_string,
}


def define_dataclass_flags(cls: type, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            define_dataclass_flags(hints[field.name], flag_values)
            continue
        if field.name in flag_values:
            # A field several configs share (batch_size, ...): one flag, each config's default in its help.
            flag = flag_values[field.name]
            flag.help = f"{flag.help}; {cls.__name__}.{field.name} (default {field.default!r})"
            continue
        define = _DEFINERS[hints[field.name]]
        define(field.name, None, f"{cls.__name__}.{field.name} (default {field.default!r})", flag_values=flag_values)


def given_fields(cls: type, flag_values: flags.FlagValues = flags.FLAGS) -> set[str]:
    """The fields of ``cls`` whose flags were given a value (on the command line or by a caller)."""
    return {f.name for f in dataclasses.fields(cls) if f.name in flag_values and flag_values[f.name].value is not None}


def foreign_flags(own: type, others: list[type], flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, type]:
    """Given flags that only another config has: ``{flag name: the config class it belongs to}``."""
    own_fields = {f.name for f in dataclasses.fields(own)}
    return {
        name: other
        for other in others
        for name in given_fields(other, flag_values) - own_fields
    }


def dataclass_from_flags(cls: type, flag_values: flags.FlagValues = flags.FLAGS, defaults: dict | None = None):
    """``cls`` built from the given flags, then ``defaults`` (e.g. a preset), then its own defaults."""
    hints = typing.get_type_hints(cls)
    overrides = dict(defaults or {})
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            overrides[f.name] = dataclass_from_flags(hints[f.name], flag_values)
        elif f.name in flag_values and flag_values[f.name].value is not None:
            overrides[f.name] = flag_values[f.name].value
    return cls(**overrides)


def dataclass_from_dict(cls: type, values: dict[str, Any]):
    """Builds dataclass ``cls`` from ``values`` (e.g. ``dataclasses.asdict``), recursing into dataclass fields.

    Keys ``cls`` has no field for are ignored; missing ones keep their defaults.
    """
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = values[field.name]
        if dataclasses.is_dataclass(hints[field.name]) and isinstance(value, dict):
            value = dataclass_from_dict(hints[field.name], value)
        kwargs[field.name] = value
    return cls(**kwargs)

