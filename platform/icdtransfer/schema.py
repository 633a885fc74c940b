"""The schema machinery behind config.py: typed dataclass fields with declared ranges
(`Annotated[int, Range(ge=1)]`), built from YAML mappings with errors that name the key.

config.py declares the params sections with these types and re-exports what other modules
import; sweep/study.py checks study files with the same `build` and `check_field`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal


class ConfigError(ValueError):
    """A params file or override that does not fit the schema; the message names the key."""


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric knob (ge/le inclusive, gt/lt exclusive), declared with Annotated."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def problem(self, value: float) -> str | None:
        """Why `value` is out of range, or None when it is inside."""
        inside = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )
        return None if inside else f"must be {self.describe()}, got {value!r}"

    def describe(self) -> str:
        """The range as error messages state it: >= 1, > 0, in [0, 1)."""
        low = None if self.ge is None and self.gt is None else self.ge is not None
        high = None if self.le is None and self.lt is None else self.le is not None
        if high is None:
            return f">= {_num(self.ge)}" if low else f"> {_num(self.gt)}"
        if low is None:
            return f"<= {_num(self.le)}" if high else f"< {_num(self.lt)}"
        left = f"[{_num(self.ge)}" if low else f"({_num(self.gt)}"
        right = f"{_num(self.le)}]" if high else f"{_num(self.lt)})"
        return f"in {left}, {right}"


@dataclass(frozen=True)
class NonEmpty:
    """A list that must have at least one element."""

    def problem(self, value: list) -> str | None:
        return "must not be empty" if not value else None


def _num(x: float | None) -> str:  # 1, 0.5 (not 1.0)
    return f"{x:g}"


# The ranges most knobs share. Seeds are non-negative because numpy's generators require it.
Size = Annotated[int, Range(ge=1)]  # sizes, counts of things that must exist, epochs, patience
Count = Annotated[int, Range(ge=0)]  # counts where 0 means none (or "auto", where documented)
Seed = Annotated[int, Range(ge=0)]
Rate = Annotated[float, Range(ge=0, lt=1)]  # a share of tokens/units removed, a held-out share
Positive = Annotated[float, Range(gt=0)]  # learning rates, regularisation strengths


def build(cls: type, data: Any, where: str, key: str = "") -> Any:
    """Build dataclass `cls` from a mapping, naming the offending key on any mismatch."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: {key or 'params'} must be a mapping, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(_join(key, u) for u in unknown)
        raise ConfigError(f"{where}: unknown key {names} (known: {', '.join(fields)})")
    values = {}
    for name, value in data.items():
        values[name] = _coerce(hints[name], value, where, _join(key, name))
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing key {', '.join(_join(key, m) for m in missing)}")
    return cls(**values)


def check_field(cls: type, name: str, value: Any, where: str, key: str) -> Any:
    """Type- and range-check one value meant for field `name` of dataclass `cls` (a study
    file's override of a params key), naming it `key` in the error."""
    return _coerce(typing.get_type_hints(cls, include_extras=True)[name], value, where, key)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        value = _coerce(args[0], value, where, key)
        for check in args[1:]:
            problem = check.problem(value)
            if problem:
                raise ConfigError(f"{where}: {key} {problem}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[-1])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key} must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return [_coerce(args[0], v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
        return {k: _coerce(args[1], v, where, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, key)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        # bool is an int in Python; a YAML `true` for an int key is still a mistake.
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: {key} must be {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: {key}: unsupported type {tp}")  # pragma: no cover
