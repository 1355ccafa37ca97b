"""absl flags generated from the configuration dataclasses, and those dataclasses from dicts.

Each dataclass field becomes a flag of the same name whose default is ``None``,
meaning "the dataclass default" (where the source of each value is cited).
A flag's help is the field's own comment in the dataclass's source, with its
default, and for a ``Literal`` field its choices. Agents that share a field
name (``batch_size``, ``unroll_length``) share the flag, and each agent keeps
its own default. A field whose type is itself a dataclass
(``EnvConfig.dmlab``) contributes that dataclass's fields as flags, flat,
under their own names.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any, Literal

from absl import flags

_DEFINERS = {
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_boolean,
    str: flags.DEFINE_string,
}


def choices(hint: Any) -> tuple[str, ...] | None:
    """The values a ``Literal["a", "b"]`` field admits; None for any other type."""
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def _alternatives(values: tuple[str, ...]) -> str:
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def check_choices(instance: Any) -> None:
    """Raises ValueError naming the flag and its choices for a ``Literal`` field set to another value."""
    hints = typing.get_type_hints(type(instance))
    for field in dataclasses.fields(instance):
        allowed = choices(hints[field.name])
        value = getattr(instance, field.name)
        if allowed is not None and value not in allowed:
            raise ValueError(f"--{field.name} must be {_alternatives(allowed)}, got {value!r}")


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """Each field's comment in ``cls``'s source: the comment lines right above it and the one after it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (a frozen build): the help says less
        return {}
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line >= 1 and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        inline = comments.get(node.end_lineno)
        found[node.target.id] = " ".join(above + ([inline] if inline else []))
    return found


def _field_help(cls: type, field: dataclasses.Field, hint: Any) -> str:
    comment = field_comments(cls).get(field.name) or field.name
    allowed = choices(hint)
    one_of = f"; one of {', '.join(allowed)}" if allowed else ""
    return f"{cls.__name__}: {comment} (default {field.default!r}{one_of})"


def define_dataclass_flags(cls: type, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            define_dataclass_flags(hint, flag_values)
            continue
        help_text = _field_help(cls, field, hint)
        if field.name in flag_values:
            # A field several configs share (batch_size, ...): one flag, each config's default in its help.
            flag = flag_values[field.name]
            flag.help = f"{flag.help}. {help_text}"
            continue
        define = _DEFINERS[str if choices(hint) else hint]
        define(field.name, None, help_text, flag_values=flag_values)


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

