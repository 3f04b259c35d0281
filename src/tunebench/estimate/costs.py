"""The estimator's view of the methods: each registered method's own cost declaration (`Method.cost`,
methods/cost.py), its options and whether it trains. There is no table here: a method is estimated once it
declares its cost, and a test fails for a registered method that declares none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunebench.core.errors import UnknownNameError, UnsupportedError, did_you_mean
from tunebench.core.typed import build
from tunebench.methods import METHODS
from tunebench.methods.cost import Cost


@dataclass(frozen=True)
class MethodCost:
    """A registered method as the estimator sees it."""

    name: str
    trains: bool
    Options: type
    """The method's own options: `--opt r=8` is what `r: 8` is in a spec."""
    declared: Cost


def estimable_methods() -> list[str]:
    """Every registered method (each declares its cost)."""
    return list(METHODS)


def method_cost(name: str, *, flag: str = "--method") -> MethodCost:
    if name not in METHODS:
        raise UnknownNameError(
            f"{flag} {name!r}: no such method.{did_you_mean(name, list(METHODS))} "
            f"Known methods: {', '.join(METHODS)}"
        )
    cls = METHODS.get(name)
    if cls.cost is None:
        raise UnsupportedError(f"{flag} {name!r}: the method declares no cost (Method.cost, methods/cost.py)")
    return MethodCost(name, cls.trains, cls.Options, cls.cost)


def method_options(name: str, values: dict[str, Any] | None, *, where: str = "--opt") -> Any:
    """The method's options from KEY=VALUE pairs, checked (unknown keys name the close match)."""
    return build(method_cost(name).Options, values or {}, f"{where} ({name})")
