"""`<method>+<objective>`: a trainable method trained on an objective's signal (`lora+dpo`, `full+dpo`).

The result is the base method itself, holding the objective (`ModelMethod(options, objective)`): it loads,
wraps, exports and predicts as the base does (a `lora+dpo` artifact is a LoRA adapter, served like any
other), and its `fit` hands over to the objective. A spec entry holds both option sets side by side,
`{name: lora+dpo, r: 8, beta: 0.1}`; config.py splits them by name (`option_groups`) into the method's
options and the objective's, each its own importable dataclass, and typos get the usual did-you-mean errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tunebench.core.errors import SpecError, UnknownNameError, did_you_mean
from tunebench.methods import METHODS, Method
from tunebench.methods.tuning import ModelMethod
from tunebench.objectives.base import OBJECTIVES, Objective

SEPARATOR = "+"


def split_name(name: str) -> tuple[str, str | None]:
    """('lora', 'dpo') for 'lora+dpo'; ('lora', None) for a plain method name."""
    if SEPARATOR not in name:
        return name, None
    base, _, objective = name.partition(SEPARATOR)
    if not base or not objective or SEPARATOR in objective:
        raise SpecError(
            f"method {name!r}: expected <method>{SEPARATOR}<objective> with one objective, "
            f"for example lora{SEPARATOR}dpo or full{SEPARATOR}distill:orca"
        )
    return base, objective


def method_class(name: str) -> type[Method]:
    """The class of the method a name trains: `lora` for both `lora` and `lora+dpo` (whose objective is
    checked here too, so that a bad combination fails wherever the name is first looked up)."""
    objective_class(name)
    return METHODS.get(split_name(name)[0])


def objective_class(name: str) -> type[Objective] | None:
    """The objective a method name asks for, or None; refuses one that the method cannot be trained on."""
    base_name, objective_name = split_name(name)
    if objective_name is None:
        return None
    base = METHODS.get(base_name)
    if objective_name not in OBJECTIVES:
        raise UnknownNameError(
            f"unknown objective {objective_name!r} in {base_name}{SEPARATOR}{objective_name}."
            f"{did_you_mean(objective_name, list(OBJECTIVES))} Known objectives: {', '.join(OBJECTIVES)}"
        )
    if not trainable_by_objective(base):
        trainable = [n for n, c in METHODS.items() if trainable_by_objective(c)]
        raise SpecError(
            f"{base_name}{SEPARATOR}{objective_name}: {base_name} does not train a language model, so the "
            f"{objective_name} objective has nothing to train; combine it with one that does "
            f"({', '.join(trainable)})"
        )
    return OBJECTIVES.get(objective_name)


def trainable_by_objective(cls: type[Method]) -> bool:
    """Whether an objective can train this method: it trains the weights of a language model."""
    return cls.trains and issubclass(cls, ModelMethod)


def build_method(name: str, options: Any = None, objective_options: Any = None) -> Method:
    """A fresh method object for a spec entry: the base method, holding its objective when the name has one."""
    cls = method_class(name)
    objective = objective_class(name)
    if objective is None:
        return cls(options)
    assert issubclass(cls, ModelMethod)  # objective_class refused any other
    held = objective(objective_options if objective_options is not None else objective.Options())
    return cls(options, objective=held)


def option_groups(name: str) -> tuple[list[str], list[str]]:
    """(the method's option names, the objective's option names); no objective: the second is empty."""
    base, objective = split_name(name)
    method_keys = _fields(METHODS.get(base).Options)
    if objective is None or objective not in OBJECTIVES:
        return method_keys, []
    return method_keys, _fields(OBJECTIVES.get(objective).Options)


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
