"""Build dataclasses from plain dicts (YAML, JSON, flags) with errors that name the offending key.

Every option group in tunebench (the budget, a task's options, a method's options) is a dataclass; this
module is the one place that turns user input into them, so unknown keys, wrong types and typos are
reported the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, cast, get_args, get_origin

from tunebench.core.errors import SpecError, did_you_mean

T = TypeVar("T")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def build(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Instantiate dataclass `cls` from `data`; `where` names the place in the spec for errors."""
    names = field_names(cls)
    if data is not None and not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping of {', '.join(names) or 'options'}, got {data!r}")
    data = dict(data or {})
    for key in data:
        if key not in names:
            raise SpecError(
                f"{where}: unknown key {key!r}.{did_you_mean(str(key), names)} "
                f"Expected one of: {', '.join(names) or '(no options)'}"
            )
    hints = typing.get_type_hints(cls)
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(where)
    return obj


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert `value` to type `tp` where that is unambiguous (YAML '1e-3' → float), else raise."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for (
            arg
        ) in args:  # a value that already has one of the types keeps it (3 stays 3 in `list[int] | int`)
            if isinstance(arg, type) and type(value) is arg:
                return value
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except SpecError as e:
                errors.append(str(e))
        raise SpecError(errors[0] if len(errors) == 1 else f"{where}: got {value!r}, expected {_name(tp)}")
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            value = [value]
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise SpecError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise SpecError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise SpecError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise SpecError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise SpecError(f"{where}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a mapping of options, got {value!r}")
        return build(cast(type, tp), value, where)  # is_dataclass also accepts instances; tp is a class
    return value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def require(condition: bool, where: str, message: str) -> None:
    """Raise a SpecError naming `where` unless `condition` holds (used by the `check` methods)."""
    if not condition:
        raise SpecError(f"{where}: {message}")


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
