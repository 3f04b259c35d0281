"""`<method>+<objective>`: a trainable method trained on an objective's signal (`lora+dpo`, `full+dpo`).

The composed method is a subclass of the base method made on demand: it loads, wraps, exports and predicts
exactly like the base (so a `lora+dpo` artifact is a LoRA adapter, served like any other), and only `fit`
goes to the objective. Its options are one dataclass holding the method's fields and the objective's, so a
spec entry reads `{name: lora+dpo, r: 8, beta: 0.1}` and typos get the usual did-you-mean errors.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from tunebench.core.errors import SpecError, UnknownNameError, did_you_mean
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


def method_class(name: str) -> type:
    """The method class for a method name, composed with its objective when the name has one."""
    from tunebench.methods import METHODS

    base, objective = split_name(name)
    if objective is None:
        return METHODS.get(name)
    return _composed(base, objective)


@functools.cache
def _composed(base_name: str, objective_name: str) -> type:
    from tunebench.methods import METHODS
    from tunebench.methods.tuning import ModelMethod

    base = METHODS.get(base_name)
    if objective_name not in OBJECTIVES:
        raise UnknownNameError(
            f"unknown objective {objective_name!r} in {base_name}{SEPARATOR}{objective_name}."
            f"{did_you_mean(objective_name, list(OBJECTIVES))} Known objectives: {', '.join(OBJECTIVES)}"
        )
    objective = OBJECTIVES.get(objective_name)
    if not (base.trains and issubclass(base, ModelMethod)):
        trainable = [n for n, c in METHODS.items() if c.trains and issubclass(c, ModelMethod)]
        raise SpecError(
            f"{base_name}{SEPARATOR}{objective_name}: {base_name} does not train a language model, so the "
            f"{objective_name} objective has nothing to train; combine it with one that does "
            f"({', '.join(trainable)})"
        )
    return _compose(base, objective)


def _combined_options(base: type, objective: type[Objective]) -> type:
    """One dataclass with both option sets; `check` runs both checks."""
    clash = set(_fields(base.Options)) & set(_fields(objective.Options))
    if clash:  # a programming error in a new objective, not a user error
        raise TypeError(f"{objective.name} options clash with {base.name}'s: {', '.join(sorted(clash))}")

    def check(self: Any, where: str) -> None:
        for cls in (base.Options, objective.Options):
            if hasattr(cls, "check"):
                cls.check(self, where)

    def __reduce__(self: Any) -> tuple:
        # made on demand, so not importable by name: pickle (Ray, multiprocessing) rebuilds it from the names
        return _rebuild_options, (base.name, objective.name, dataclasses.asdict(self))

    name = f"{base.Options.__name__}With{objective.Options.__name__}"
    return dataclasses.make_dataclass(
        name,
        [],
        bases=(objective.Options, base.Options),
        namespace={"check": check, "__reduce__": __reduce__},
    )


def _rebuild_options(base: str, objective: str, values: dict[str, Any]) -> Any:
    return _composed(base, objective).Options(**values)


def _compose(base: type, objective: type[Objective]) -> type:
    from tunebench.methods.base import Context
    from tunebench.train.loop import TrainStats

    full_name = f"{base.name}{SEPARATOR}{objective.name}"

    class Composed(base):  # type: ignore[misc, valid-type]
        name = full_name
        summary = f"{base.name} trained by {objective.name}: {objective.summary}"
        Options = _combined_options(base, objective)
        base_method = base.name
        objective_name = objective.name

        def __init__(self, options: Any = None) -> None:
            super().__init__(options)
            self.objective = objective(self.options)

        def check(self, task, model) -> None:
            from tunebench.core.errors import UnsupportedError
            from tunebench.methods.heads import GenerativeHead

            super().check(task, model)
            self.objective.check(task, model)
            if not isinstance(self.choose_head(task, model), GenerativeHead):
                raise UnsupportedError(
                    f"{full_name} trains the model to write its answers; a classification head "
                    "(head: classifier) has no text to train"
                )

        def max_new_tokens(self, task) -> int:
            return self.objective.max_new_tokens(task, super().max_new_tokens(task))

        def fit(self, ctx: Context) -> TrainStats:
            self.train_stats = self.objective.fit(self, ctx)
            return self.train_stats

        def predict(self, ctx: Context, inputs: list[str]) -> list[str]:
            return [self.objective.final_answer(t) for t in super().predict(ctx, inputs)]

        @property
        def objective_info(self) -> dict:
            return self.objective.info

    Composed.__name__ = Composed.__qualname__ = f"{base.__name__}_{objective.__name__}"
    Composed.__doc__ = f"{base.name} trained with the {objective.name} objective."
    return Composed


def option_groups(name: str) -> tuple[list[str], list[str]]:
    """(method option names, objective option names) for error messages; no objective: the second is empty."""
    base, objective = split_name(name)
    from tunebench.methods import METHODS

    method_keys = _fields(METHODS.get(base).Options)
    if objective is None or objective not in OBJECTIVES:
        return method_keys, []
    return method_keys, _fields(OBJECTIVES.get(objective).Options)


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
