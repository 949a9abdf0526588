"""Typed, validated params: turn a params.yaml section into a frozen dataclass, or fail naming the key.

Each stage declares its section as a dataclass (fields with defaults and ``Literal`` choices, plus an
optional ``validate`` method for ranges) and calls :func:`load_params` once at start-up. Unknown keys,
wrong types and out-of-range values raise :class:`~vlclean.errors.ParamsError` naming the dotted key,
before any work is done.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from vlclean.errors import ParamsError

T = TypeVar("T")


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file into a dict; a missing or malformed file is a ParamsError."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError as err:
        raise ParamsError(f"params file {path} does not exist") from err
    except yaml.YAMLError as err:
        raise ParamsError(f"params file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ParamsError:
                continue
        raise ParamsError(f"params key '{key}': {value!r} matches none of {[_type_name(a) for a in args]}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ParamsError(f"params key '{key}': {value!r} is not one of {list(choices)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"params key '{key}': expected a list, got {type(value).__name__} {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"params key '{key}': expected a mapping, got {type(value).__name__} {value!r}")
        k_tp, v_tp = get_args(tp) or (Any, Any)
        return {_coerce(k, k_tp, f"{key}.{k}"): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"params key '{key}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"params key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"params key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"params key '{key}': expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported params type {tp!r} for '{key}'")  # a bug in a dataclass, not user input


def from_dict(cls: type[T], data: Any, prefix: str) -> T:
    """Build dataclass ``cls`` from a mapping, validating keys, types, and ``cls.validate`` ranges."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"params key '{prefix}': expected a mapping, got {type(data).__name__} {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(
            f"params key '{prefix}.{unknown[0]}' is unknown; allowed keys under '{prefix}': {sorted(fields)}"
        )
    kwargs = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}"
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ParamsError(f"params key '{key}' is required")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(prefix)
    return obj


def load_params(cls: type[T], section: str, path: str | Path = "params.yaml") -> T:
    """Load ``section`` of the params file at ``path`` into ``cls`` (see module doc)."""
    data = read_params_file(path)
    if section not in data:
        raise ParamsError(f"params file {path} has no section '{section}'")
    return from_dict(cls, data[section], section)


def check_range(prefix: str, name: str, value: float | int, lo: float | None = None, hi: float | None = None) -> None:
    """Raise a ParamsError naming ``prefix.name`` when ``value`` lies outside ``[lo, hi]``."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise ParamsError(f"params key '{prefix}.{name}': {value!r} is outside [{lo_s}, {hi_s}]")




@dataclasses.dataclass(frozen=True)
class BaseParams:
    """The ``base`` section shared by every stage: the dataset name (output prefix) and the seed."""

    dataset: str = "digits"
    seed: int = 42

    def validate(self, prefix: str) -> None:
        if not self.dataset or not all(c.isalnum() or c in "_-" for c in self.dataset):
            raise ParamsError(f"params key '{prefix}.dataset': {self.dataset!r} must be letters, digits, '_' or '-'")


def load_base(path: str | Path = "params.yaml") -> BaseParams:
    return load_params(BaseParams, "base", path)
