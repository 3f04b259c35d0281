"""The typed experiment spec. YAML files and command-line flags are only two ways of writing it.

A spec is validated completely (models, task, methods and their options, budget) before anything is
written, and every error names the key or flag at fault.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tunebench.core.errors import SpecError, UnknownNameError, did_you_mean
from tunebench.core.searchspace import SETTINGS, SearchSpec, parse_search
from tunebench.core.typed import build, coerce, field_names, require
from tunebench.core.units import parse_memory
from tunebench.methods import Method
from tunebench.objectives import build_method, method_class, objective_class, option_groups, split_name
from tunebench.tasks import TASKS
from tunebench.tasks.files import FORMATS, HF_PREFIX, file_format_error
from tunebench.tasks.subsets import DataSizes, parse_data_sizes
from tunebench.train.budget import Budget


@dataclass
class Resources:
    """What one run asks of a Ray cluster (`--executor ray`); running in this process ignores it.

    Not part of a run's config hash: where a run ran does not change what it computes."""

    cpus: float = 1.0
    """CPU cores per run; the run uses this many threads."""
    gpus: float | None = None
    """GPUs per run (a fraction shares one); unset: 1 when the cluster has a GPU, else 0."""
    memory: str | None = None
    """Memory Ray reserves for the run, e.g. 8GB or 512MB (a bare number is MB); unset: none reserved."""

    def check(self, where: str) -> None:
        require(self.cpus > 0, f"{where}.cpus", f"must be positive, got {self.cpus}")
        require(self.gpus is None or self.gpus >= 0, f"{where}.gpus", f"must be 0 or more, got {self.gpus}")
        if self.memory is not None:
            self.memory_mb(where)

    def memory_mb(self, where: str = "resources") -> float | None:
        return None if self.memory is None else parse_memory(self.memory, f"{where}.memory")


@dataclass
class MethodSpec:
    name: str
    """The method's name; `<method>+<objective>` names a method trained on an objective (`lora+dpo`)."""
    options: Any
    """The method's own options dataclass, validated."""
    budget: Budget
    """The experiment budget with this method's overrides applied."""
    overrides: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    """The experiment's resources with this method's `resources:` entries applied."""
    objective_options: Any = None
    """The objective's options dataclass, validated (None: the name has no objective)."""
    search: SearchSpec | None = None
    """The options and budget fields to choose on dev (`search:` in the entry; runs/search.py)."""
    searched: dict[str, Any] | None = None
    """Once the search ran: its record (result.json `search`); the options above are then the chosen ones."""

    @property
    def trains(self) -> bool:
        return method_class(self.name).trains

    def all_options(self) -> dict[str, Any]:
        """The method's options and its objective's, as one mapping (a spec entry's, a run config's)."""
        objective = {} if self.objective_options is None else dataclasses.asdict(self.objective_options)
        return {**dataclasses.asdict(self.options), **objective}

    def make(self) -> Method:
        """A fresh method object for one run (or one learning-rate candidate)."""
        return build_method(self.name, self.options, self.objective_options)


@dataclass
class TaskSpec:
    name: str
    options: dict[str, Any]


@dataclass
class ExperimentSpec:
    name: str
    models: list[str]
    task: TaskSpec
    methods: list[MethodSpec]
    seeds: list[int]
    budget: Budget
    out: str = "runs"
    source: str = "<flags>"
    resources: Resources = field(default_factory=Resources)
    run_cache: str | None = None
    """A runs folder to take finished runs from (same identity) besides `out`: shared by a team or machines."""
    data_sizes: DataSizes | None = None
    """Training-set sizes every method runs at (tasks/subsets.py); None: the whole training split only."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "models": self.models,
            "task": {"name": self.task.name, **self.task.options},
            "methods": [
                {
                    "name": m.name,
                    **{k: v for k, v in m.all_options().items() if not _searched(m, k)},
                    **{k: v for k, v in m.overrides.items() if not _searched(m, k)},
                    **_resources_entry(m, self),
                    **(m.search.to_spec() if m.search else {}),
                }
                for m in self.methods
            ],
            "seeds": self.seeds,
            "budget": dataclasses.asdict(self.budget),
            "resources": dataclasses.asdict(self.resources),
            "out": self.out,
            "run_cache": self.run_cache,
            **({"data_sizes": self.data_sizes.to_dict()} if self.data_sizes else {}),
        }


def _searched(method: MethodSpec, key: str) -> bool:
    return method.search is not None and key in {d.name for d in method.search.space}


def _resources_entry(method: MethodSpec, spec: ExperimentSpec) -> dict[str, Any]:
    """A method's own `resources:` entry, where it differs from the experiment's."""
    if method.resources == spec.resources:
        return {}
    return {"resources": dataclasses.asdict(method.resources)}


SPEC_KEYS = [
    "name", "models", "task", "methods", "seeds", "data_sizes", "budget", "resources", "out", "run_cache",
]  # fmt: skip


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such spec file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of {', '.join(SPEC_KEYS)}")
    data.setdefault("name", path.stem)
    return data


def default_spec_path() -> Path:
    """The built-in default experiment (3-digit addition on SmolLM2-135M), shipped with the package."""
    return Path(str(resources.files("tunebench") / "experiments" / "default.yaml"))


def keep_methods(data: dict[str, Any], wanted: list[str]) -> list[Any]:
    """The spec's method entries for `wanted`, in that order; a name the spec lists keeps its options."""
    by_name = {(m if isinstance(m, str) else m.get("name")): m for m in data.get("methods", [])}
    return [by_name.get(name, name) for name in wanted]


def parse_spec(data: dict[str, Any], source: str = "<flags>") -> ExperimentSpec:
    """Validate a spec given as plain data (from YAML, merged with flags)."""

    for key in data:
        if key not in SPEC_KEYS:
            raise SpecError(
                f"{source}: unknown key {key!r}.{did_you_mean(str(key), SPEC_KEYS)} "
                f"Expected: {', '.join(SPEC_KEYS)}"
            )
    require("models" in data and data["models"], f"{source}: models", "name at least one model")
    require("methods" in data and data["methods"], f"{source}: methods", "name at least one method")
    models = _str_list(data["models"], f"{source}: models")
    twice = sorted({m for m in models if models.count(m) > 1})
    require(not twice, f"{source}: models", f"{', '.join(twice)} listed twice")
    budget = build(Budget, data.get("budget"), f"{source}: budget")
    task = parse_task(data.get("task", "arithmetic"), f"{source}: task")
    resources = build(Resources, data.get("resources"), f"{source}: resources")
    methods = [
        parse_method(m, budget, f"{source}: methods[{i}]", resources)
        for i, m in enumerate(_as_list(data["methods"]))
    ]
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    require(not dupes, f"{source}: methods", f"{', '.join(dupes)} listed twice")
    seeds = coerce(data.get("seeds", [0]), list[int], f"{source}: seeds")
    require(bool(seeds), f"{source}: seeds", "give at least one seed")
    require(all(s >= 0 for s in seeds), f"{source}: seeds", f"seeds must be 0 or more, got {seeds}")
    require(len(set(seeds)) == len(seeds), f"{source}: seeds", f"a seed is listed twice: {seeds}")
    name = str(data.get("name") or "experiment")
    require(
        name.replace("-", "").replace("_", "").isalnum(),
        f"{source}: name",
        f"use letters, digits, '-' and '_' only (it names a folder), got {name!r}",
    )
    return ExperimentSpec(
        name=name,
        models=models,
        task=task,
        methods=methods,
        seeds=seeds,
        budget=budget,
        out=str(data.get("out", "runs")),
        resources=resources,
        run_cache=_run_cache(data.get("run_cache"), f"{source}: run_cache"),
        source=source,
        data_sizes=parse_data_sizes(data.get("data_sizes"), f"{source}: data_sizes"),
    )


def parse_task(value: Any, where: str) -> TaskSpec:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise SpecError(f"{where}: expected a task name or a mapping with 'name'")
    options = {k: v for k, v in value.items() if k != "name"}
    name = str(value["name"])
    if name.startswith(HF_PREFIX):  # a Hugging Face dataset: read like a file
        options.setdefault("path", name)
        name = "file"
    elif name not in TASKS and (name.lower().endswith(tuple(FORMATS)) or Path(name).is_file()):
        if not name.lower().endswith(tuple(FORMATS)):  # a file, in a format tunebench does not read
            raise SpecError(f"{where}: {name} is a file, but {file_format_error(Path(name))}")
        options.setdefault("path", name)  # a data file given directly as the task
        name = "file"
    TASKS.get(name)  # unknown names fail here, with close matches
    build(
        TASKS.get(name).options, options, where
    )  # options are checked now; data is read when the run starts
    return TaskSpec(name=name, options=options)


def parse_method(value: Any, budget: Budget, where: str, resources: Resources | None = None) -> MethodSpec:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise SpecError(f"{where}: expected a method name or a mapping with 'name'")
    name = str(value["name"])
    try:
        method_cls = method_class(name)  # `lora+dpo`: LoRA trained on the DPO objective
        objective_cls = objective_class(name)
    except (SpecError, UnknownNameError) as e:
        if "+" not in name:
            raise
        raise type(e)(f"{where}: {e}") from None
    method_keys, objective_keys = option_groups(name)
    budget_keys = field_names(Budget)
    value = _lr_list_as_grid(value)
    _refuse_unknown_keys(value, name, where, method_keys, objective_keys, budget_keys)
    here = f"{where} ({name})"
    # each method's and objective's own options dataclass (MethodSpec.options, .objective_options: Any)
    opts: Any = build(method_cls.Options, {k: v for k, v in value.items() if k in method_keys}, here)
    objective_opts: Any = None
    if objective_cls is not None:
        given = {k: v for k, v in value.items() if k in objective_keys}
        objective_opts = build(objective_cls.Options, given, here)
    overrides = {k: v for k, v in value.items() if k in budget_keys and k not in method_keys + objective_keys}
    method_budget = build(Budget, {**dataclasses.asdict(budget), **overrides}, here)
    method_budget = method_budget.with_recipe(method_cls.recipe)
    search = None
    if "search" in value or any(key in value for key in SETTINGS):
        search, method_budget = _search(value, here, opts, objective_opts, method_budget, method_cls.trains)
    require(
        method_budget.early_stopping is None or objective_cls is None,
        f"{here}.early_stopping",
        "an objective trains in phases (supervised steps, then its own); early stopping works on methods "
        "trained on the task's targets alone",
    )
    if hasattr(
        objective_opts, "check_budget"
    ):  # an objective whose options constrain the batch (rl's groups)
        objective_opts.check_budget(method_budget, here)
    own = value.get("resources") or {}
    if not isinstance(own, dict):
        raise SpecError(f"{here}.resources: expected a mapping of cpus, gpus, memory")
    base = dataclasses.asdict(resources or Resources())
    method_resources = build(Resources, {**base, **own}, f"{here}.resources")
    return MethodSpec(
        name=name,
        options=opts,
        budget=method_budget,
        overrides=overrides,
        resources=method_resources,
        objective_options=objective_opts,
        search=search,
    )


def _refuse_unknown_keys(
    value: dict[str, Any],
    name: str,
    where: str,
    method_keys: list[str],
    objective_keys: list[str],
    budget_keys: list[str],
) -> None:
    """A key that is neither the method's, its objective's, a budget field nor `resources`: name the groups."""
    allowed = {*method_keys, *objective_keys, *budget_keys, "name", "resources", "search", *SETTINGS}
    unknown = [k for k in value if k not in allowed]
    if not unknown:
        return
    objective = split_name(name)[1]
    raise SpecError(
        f"{where} ({name}): unknown key {unknown[0]!r}.{did_you_mean(unknown[0], sorted(allowed - {'name'}))} "
        f"Method options: {', '.join(sorted(method_keys)) or '(none)'}; "
        + (f"{objective} options: {', '.join(sorted(objective_keys)) or '(none)'}; " if objective else "")
        + f"budget overrides: {', '.join(sorted(budget_keys))}"
    )


#: Budget fields a search may choose: the recipe of a run. The others say how runs are measured or carried
#: out, the same for every method (or are themselves a search).
SEARCHABLE_BUDGET = (
    "steps", "epochs", "batch_size", "grad_accum", "max_length", "lr", "warmup", "weight_decay",
)  # fmt: skip
_NOT_SEARCHABLE = "it says how every run is measured or carried out, the same for every method"


def _lr_list_as_grid(value: dict[str, Any]) -> dict[str, Any]:
    """`search: {lr: [a, b, c]}` alone is the learning-rate grid (`lr_grid`), run as it has always been
    (grid or successive halving, `lr_search`), so that it chooses what `lr_grid` chooses."""
    search = value.get("search")
    if not (isinstance(search, dict) and list(search) == ["lr"] and isinstance(search["lr"], list)):
        return value
    if any(key in value for key in (*SETTINGS, "lr", "lr_grid")):  # trials etc.: an Optuna search
        return value
    return {**{k: v for k, v in value.items() if k != "search"}, "lr_grid": search["lr"]}


def _search(
    value: dict[str, Any], here: str, opts: Any, objective_opts: Any, budget: Budget, trains: bool
) -> tuple[SearchSpec, Budget]:
    """The entry's search, each name checked against the method's options, its objective's and the budget;
    and the method's budget (a search over lr replaces the experiment's learning-rate grid)."""
    groups = {"method": opts, "objective": objective_opts, "budget": budget}
    fields: dict[str, tuple[Any, str]] = {}
    for group in ("budget", "objective", "method"):  # a method's own option wins over a budget field
        if groups[group] is not None:
            hints = typing.get_type_hints(type(groups[group]))
            names = field_names(type(groups[group]))
            if group == "budget":
                names = list(SEARCHABLE_BUDGET) if trains else []
            fields.update({n: (hints[n], group) for n in names})
    refused = {n: _NOT_SEARCHABLE for n in field_names(Budget) if n not in SEARCHABLE_BUDGET}
    if not trains:
        refused |= {n: f"{value['name']} does not train" for n in SEARCHABLE_BUDGET}
    refused |= {"lr_grid": "a learning-rate grid is a search of its own; search lr instead",
                "lr_search": "a learning-rate grid is a search of its own; search lr instead"}  # fmt: skip

    def validate(name: str, v: Any) -> None:
        target = groups[fields[name][1]]
        build(type(target), {**dataclasses.asdict(target), name: v}, f"{here}.search")

    search = parse_search(value, fields, refused, here, validate)
    if budget.grid and ("lr_grid" in value or "lr" not in {d.name for d in search.space}):
        raise SpecError(
            f"{here}.lr_grid: a learning-rate grid and a search both choose on dev; put lr in the search "
            "instead (search: {lr: {log: [lo, hi]}, ...})"
        )
    return search, dataclasses.replace(budget, lr_grid=[])


def _run_cache(value: Any, where: str) -> str | None:
    if value in (None, ""):
        return None
    require(Path(str(value)).is_dir(), where, f"no such folder: {value}")
    return str(value)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, list | tuple) else [value]


def _str_list(value: Any, where: str) -> list[str]:
    items = _as_list(value)
    for item in items:
        require(isinstance(item, str) and item != "", where, f"expected model names, got {item!r}")
    return items
