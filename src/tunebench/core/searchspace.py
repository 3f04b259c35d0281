"""A method's search space: which options and budget fields to choose on dev, over which values.

A method entry's `search:` maps a name to its values:

    search: {lr: {log: [1e-4, 3e-3]}, r: [4, 8, 16, 32], alpha: [16, 32]}

  [a, b, c]          one of these values (categorical; any type the option takes, lists included)
  {log: [lo, hi]}    log-uniform between lo and hi (lo > 0): rates, regularization strengths; integers on
                     an integer option (r: {log: [4, 64]})
  {float: [lo, hi]}  uniform between lo and hi (a numeric option)
  {int: [lo, hi]}    a uniform integer between lo and hi, both included (an integer option)

This module parses and checks the space (pure, without a model); runs/search.py turns it into an Optuna
study. The caller (config.py) says which names exist and what type each takes (the method's options
dataclass, its objective's, the searchable budget fields) and checks each value by building the options
with it, so a value the method would refuse is refused here, naming `search.<name>`.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from tunebench.core.errors import SpecError, did_you_mean
from tunebench.core.typed import build, coerce, require

RANGES = ("log", "float", "int")
#: What a search can be asked to optimize besides the dev score (each minimized), and what it reads.
OBJECTIVES = {
    "dev": "the primary metric on the dev split (maximized)",
    "trainable_params": "trainable parameters (minimized)",
    "peak_memory": "peak training memory, MB (minimized; CUDA allocator peak, else the process's RSS)",
    "train_seconds": "training time, seconds (minimized)",
}
PRUNERS = ("median", "hyperband", "none")
#: Entry keys that configure the search rather than name a dimension (`--search lora.trials=12`).
SETTINGS = ("trials", "objectives", "pruner")


@dataclass(frozen=True)
class Dimension:
    """One searched name and its values."""

    name: str
    kind: str
    """choice, log, float or int."""
    values: tuple[Any, ...] = ()
    """The choices (kind `choice`), already of the option's type."""
    low: float = 0.0
    high: float = 0.0
    integer: bool = False
    """The option is an integer: a range samples integers."""
    group: str = "method"
    """Where the value goes: `method` (its options), `objective` (its objective's options) or `budget`."""

    def to_spec(self) -> Any:
        """The dimension as a spec writes it (for spec.yaml and result.json)."""
        if self.kind == "choice":
            return list(self.values)
        low, high = (int(self.low), int(self.high)) if self.integer else (self.low, self.high)
        return {self.kind: [low, high]}

    @property
    def size(self) -> float:
        """How many values it can take (inf for a continuous range)."""
        if self.kind == "choice":
            return len(self.values)
        if self.integer:
            return int(self.high) - int(self.low) + 1
        return math.inf


@dataclass
class Pruner:
    """Stops a trial early when its dev curve falls behind the other trials' at the same step (Optuna)."""

    name: str = "median"
    """median (Optuna's MedianPruner: stop a trial whose best dev score so far is below the median of the
    earlier trials' at the same step), hyperband (Optuna's HyperbandPruner, which Optuna's documentation
    recommends with its TPE sampler) or none."""
    startup_trials: int = 5
    """median: trials that finish before any is pruned (Optuna's default, 5)."""
    warmup_steps: int = 0
    """median: optimizer steps before a trial can be pruned (Optuna's default, 0)."""

    def check(self, where: str) -> None:
        require(
            self.name in PRUNERS,
            f"{where}.name",
            f"expected {', '.join(PRUNERS)}, got {self.name!r}.{did_you_mean(self.name, PRUNERS)}",
        )
        require(self.startup_trials >= 0, f"{where}.startup_trials", "must be 0 or more")
        require(self.warmup_steps >= 0, f"{where}.warmup_steps", "must be 0 or more")


@dataclass
class SearchSpec:
    """What a method entry asks to search (validated)."""

    space: list[Dimension]
    trials: int
    """Trials to train (each on the first seed, scored on dev)."""
    objectives: list[str] = field(default_factory=lambda: ["dev"])
    pruner: Pruner = field(default_factory=Pruner)
    exhaustive: bool = False
    """Every value a list, and `trials` covers every combination: each is trained once (Optuna's
    GridSampler) instead of sampled."""

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def to_spec(self) -> dict[str, Any]:
        """The entry keys that give this search back (for spec.yaml)."""
        return {
            "search": {d.name: d.to_spec() for d in self.space},
            "trials": self.trials,
            "objectives": list(self.objectives),
            "pruner": {"name": self.pruner.name, "startup_trials": self.pruner.startup_trials,
                       "warmup_steps": self.pruner.warmup_steps},
        }  # fmt: skip


#: name → (the type it takes, the group it belongs to)
Fields = dict[str, tuple[Any, str]]
#: (name, value) → None, or raises SpecError: the method would refuse this value
Validate = Callable[[str, Any], None]


def parse_search(
    entry: dict[str, Any], fields: Fields, refused: dict[str, str], where: str, validate: Validate
) -> SearchSpec:
    """The entry's `search:`, `trials:`, `objectives:` and `pruner:`, checked.

    `refused` names budget fields that exist but cannot be searched, with the reason; `validate` checks a
    single value of a name the way the method would (config.py builds the options with it)."""
    raw = entry.get("search")
    if raw is None:
        given = ", ".join(k for k in SETTINGS if k in entry)
        raise SpecError(
            f"{where}.{given.split(', ')[0]}: {given} configure a search; add search: {{option: values}}"
        )
    if not isinstance(raw, dict) or not raw:
        raise SpecError(f"{where}.search: expected a mapping of option → values, e.g. {{r: [4, 8, 16]}}")
    space = [_dimension(str(name), value, fields, refused, f"{where}.search", validate)
             for name, value in raw.items()]  # fmt: skip
    for name in raw:
        require(
            name not in entry,
            f"{where}.search.{name}",
            f"{name} is both set on the entry ({entry.get(name)!r}) and searched; drop one",
        )
    combinations = math.prod(d.size for d in space)
    trials = entry.get("trials")
    if trials is None:
        require(
            all(d.kind == "choice" for d in space),
            f"{where}.trials",
            "a search over a range needs a trial count, e.g. trials: 12",
        )
        trials = int(combinations)
    trials = coerce(trials, int, f"{where}.trials")
    require(trials >= 1, f"{where}.trials", f"must be at least 1, got {trials}")
    exhaustive = all(d.kind == "choice" for d in space) and trials >= combinations
    return SearchSpec(
        space=space,
        trials=int(min(trials, combinations)),  # more trials than combinations would repeat some
        objectives=_objectives(entry.get("objectives"), f"{where}.objectives"),
        pruner=_pruner(entry.get("pruner"), f"{where}.pruner"),
        exhaustive=exhaustive,
    )


def _dimension(
    name: str, value: Any, fields: Fields, refused: dict[str, str], where: str, validate: Validate
) -> Dimension:
    here = f"{where}.{name}"
    if name in refused:
        raise SpecError(f"{here}: cannot be searched: {refused[name]}")
    if name not in fields:
        raise SpecError(
            f"{where}: unknown option {name!r}.{did_you_mean(name, fields)} "
            f"Searchable: {', '.join(sorted(fields))}"
        )
    tp, group = fields[name]
    if isinstance(value, list | tuple):
        values = tuple(coerce(v, tp, f"{here}[{i}]") for i, v in enumerate(value))
        require(
            len(values) >= 2, here, "give at least two values to choose from (one value: set it on the entry)"
        )
        keys = [json.dumps(v, sort_keys=True) for v in values]
        require(len(set(keys)) == len(keys), here, f"a value is listed twice: {list(values)}")
        for v in values:
            validate(name, v)
        return Dimension(name, "choice", values=values, group=group)
    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in RANGES):
        raise SpecError(
            f"{here}: expected a list of values or a range ({{log: [lo, hi]}}, {{float: [lo, hi]}}, "
            f"{{int: [lo, hi]}}), got {value!r}"
        )
    ((kind, bounds),) = value.items()
    numeric = _numeric(tp)
    if numeric is None:
        raise SpecError(
            f"{here}: a range needs a numeric option, and {name} takes {_type_name(tp)}; give a list of values"
        )
    require(
        kind != "int" or numeric is int,
        here,
        f"an int range needs an integer option, and {name} takes a number; use {{float: [lo, hi]}} or {{log: [lo, hi]}}",
    )
    if not (isinstance(bounds, list | tuple) and len(bounds) == 2):
        raise SpecError(f"{here}.{kind}: expected [lo, hi], got {bounds!r}")
    low, high = (coerce(b, numeric, f"{here}.{kind}[{i}]") for i, b in enumerate(bounds))
    require(math.isfinite(low) and math.isfinite(high), f"{here}.{kind}", "bounds must be finite numbers")
    require(low < high, f"{here}.{kind}", f"expected lo < hi, got [{low}, {high}]")
    require(kind != "log" or low > 0, f"{here}.log", f"a log range needs lo > 0, got {low}")
    validate(name, low)
    validate(name, high)
    return Dimension(name, kind, low=float(low), high=float(high), integer=numeric is int, group=group)


def _numeric(tp: Any) -> type | None:
    """int or float when the option takes a number (possibly optional), else None."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _numeric(args[0]) if len(args) == 1 else None
    return tp if tp in (int, float) else None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _objectives(value: Any, where: str) -> list[str]:
    if value is None:
        return ["dev"]
    names = coerce(value, list[str], where)
    for name in names:
        require(
            name in OBJECTIVES,
            where,
            f"unknown objective {name!r}.{did_you_mean(name, OBJECTIVES)} Known: {', '.join(OBJECTIVES)}",
        )
    require("dev" in names, where, "include dev: the search is scored on the dev split")
    require(len(set(names)) == len(names), where, f"an objective is listed twice: {names}")
    return ["dev", *(n for n in names if n != "dev")]


def _pruner(value: Any, where: str) -> Pruner:
    if value is None:
        return Pruner()
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected median, hyperband, none or a mapping with name, got {value!r}")
    return build(Pruner, value, where)


# -- the command line: `--search lora.r=4,8,16 --search lora.lr=log:1e-4:3e-3 --search lora.trials=12` ------


def flag_value(text: str, where: str) -> Any:
    """A flag's values: `log:LO:HI`, `float:LO:HI`, `int:LO:HI` (a range) or `a,b,c` (a list)."""
    kind, sep, rest = text.partition(":")
    if sep and kind in RANGES:
        bounds = rest.split(":")
        if len(bounds) != 2:
            raise SpecError(f"{where}: expected {kind}:LO:HI, got {text!r}")
        return {kind: [_scalar(b) for b in bounds]}
    return [_scalar(v) for v in text.split(",") if v.strip()]


def _scalar(text: str) -> Any:
    """'1e-4' → 1e-4, '8' → 8, 'true' → True, 'q+v' → ['q', 'v'] (a list value, e.g. target_modules), else
    the text."""
    text = text.strip()
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    if "+" in text:
        return [t for t in text.split("+") if t]
    return {"true": True, "false": False}.get(text.lower(), text)


def apply_flags(methods: list[Any], flags: list[str]) -> list[Any]:
    """The spec's method entries with `--search METHOD.KEY=VALUES` applied: KEY a searched name (its values
    as `flag_value` reads them; a value the entry fixed for it is dropped), or one of `trials`,
    `objectives`, `pruner` (set on the entry)."""
    entries = [dict(m) if isinstance(m, dict) else {"name": m} for m in methods]
    names = [str(e.get("name")) for e in entries]
    for flag in flags:
        where = f"--search {flag}"
        target, sep, text = flag.partition("=")
        method, dot, key = target.strip().rpartition(".")
        if not sep or not dot or not method or not key or not text.strip():
            raise SpecError(
                f"{where}: expected METHOD.KEY=VALUES, e.g. lora.r=4,8,16 or lora.lr=log:1e-4:3e-3"
            )
        if method not in names:
            raise SpecError(
                f"{where}: {method!r} is not among the methods ({', '.join(names)}).{did_you_mean(method, names)}"
            )
        entry = entries[names.index(method)]
        if key == "trials":
            entry["trials"] = _scalar(text)
        elif key == "objectives":
            entry["objectives"] = [v.strip() for v in text.split(",") if v.strip()]
        elif key == "pruner":
            entry["pruner"] = text.strip()
        else:
            entry["search"] = {**(entry.get("search") or {}), key: flag_value(text.strip(), where)}
            # a flag overrides the spec: the value the entry fixed (r: 16), or its rate grid, gives way
            for fixed in (key, "lr_grid") if key == "lr" else (key,):
                entry.pop(fixed, None)
    return entries
