"""The typed experiment spec. YAML files and command-line flags are only two ways of writing it.

A spec is validated completely (models, task, methods and their options, budget) before anything is
written, and every error names the key or flag at fault.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunebench.errors import SpecError, UnknownNameError
from tunebench.typed import build, coerce, field_names, require


@dataclass
class EarlyStopping:
    """Stop a run when its dev score has not improved for `patience` evaluations, and keep its best state.

    Off unless a spec asks for it: every method then gets the same declared budget, which is what the
    leaderboard compares, and each run still records whether it was improving when the budget ran out
    (`train.convergence`), so a budget that was too short is flagged rather than hidden.
    """

    patience: int = 3
    """Dev evaluations (one every `dev_every` steps) without an improvement before training stops."""
    min_delta: float = 0.0
    """An improvement must exceed this (in the metric's units, 0.01 = one point of accuracy) to count."""

    def check(self, where: str) -> None:
        require(self.patience >= 1, f"{where}.patience", f"must be at least 1, got {self.patience}")
        require(
            math.isfinite(self.min_delta) and self.min_delta >= 0,
            f"{where}.min_delta",
            f"must be 0 or more, got {self.min_delta}",
        )


@dataclass
class Budget:
    """The training budget, identical for every trained method unless a method entry overrides a field."""

    steps: int = 150
    """Optimizer steps per trained run (ignored when `epochs` is set)."""
    epochs: float | None = None
    """Passes over the training split; when set, replaces `steps`. The way to size a budget for a data file:
    the same number of epochs means the same data seen, whatever the file's size."""
    batch_size: int = 32
    """Examples per optimizer step (before gradient accumulation)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step; effective batch = batch_size × grad_accum."""
    max_length: int = 256
    """Longest tokenized example (prompt + target); longer ones are truncated from the left of the prompt."""
    lr: float | None = None
    """Peak learning rate (AdamW); unset: the method's own default (`tunebench methods` lists them)."""
    warmup: float | None = None
    """Fraction of the steps spent warming up linearly to `lr`, then cosine decay; unset: the method's."""
    weight_decay: float | None = None
    """AdamW's decoupled weight decay; unset: the method's default."""
    precision: str = "auto"
    """auto (bf16 autocast where the CPU or GPU supports it), bf16, or fp32."""
    eval_batch_size: int = 64
    """Examples per generation batch at evaluation."""
    lr_grid: list[float] | str = field(default_factory=list)
    """Learning rates to choose from on the dev split before the final runs (empty: train with `lr`), or
    `auto`: the method's own grid around its default rate. Opt-in because each candidate costs a training
    run; methods that do not train skip it."""
    lr_search: str = "grid"
    """grid (every candidate gets the whole budget) or halving (successive halving: all candidates get a
    fraction of the steps, the better half on dev goes on with twice as many, until one is left)."""
    dev_every: int = 0
    """Score the dev split every N optimizer steps for the learning curve (0: never). Costs one dev
    evaluation each time; that time is left out of the training time."""
    early_stopping: EarlyStopping | None = None
    """Stop when the dev curve stops improving and restore the best state, e.g. {patience: 3, min_delta:
    0}; needs `dev_every`. Unset: every run trains its whole budget."""
    checkpoint_every: int = 50
    """Save a training checkpoint every N optimizer steps (0: never), so that a killed run resumes from
    it. It does not change results, so it is left out of the run's config hash."""

    def check(self, where: str) -> None:
        if isinstance(self.lr_grid, str) and self.lr_grid != AUTO:  # "1e-4,1e-3" from a flag
            self.lr_grid = coerce(self.lr_grid, list[float], f"{where}.lr_grid")
        floats = {name: getattr(self, name) for name in ("epochs", "lr", "warmup", "weight_decay")}
        floats.update({f"lr_grid[{i}]": lr for i, lr in enumerate(self.grid)})
        for name, value in floats.items():  # YAML reads .inf and .nan as numbers
            require(
                value is None or math.isfinite(value),
                f"{where}.{name}",
                f"must be a finite number, got {value}",
            )
        require(self.steps >= 1, f"{where}.steps", f"must be at least 1, got {self.steps}")
        require(
            self.epochs is None or self.epochs > 0, f"{where}.epochs", f"must be positive, got {self.epochs}"
        )
        require(self.batch_size >= 1, f"{where}.batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.grad_accum >= 1, f"{where}.grad_accum", f"must be at least 1, got {self.grad_accum}")
        require(self.max_length >= 8, f"{where}.max_length", f"must be at least 8, got {self.max_length}")
        require(
            self.lr is None or self.lr > 0,
            f"{where}.lr",
            f"the learning rate must be positive, got {self.lr}",
        )
        require(
            self.warmup is None or 0 <= self.warmup < 1,
            f"{where}.warmup",
            f"a fraction in [0, 1) is expected, got {self.warmup}",
        )
        require(
            self.weight_decay is None or self.weight_decay >= 0,
            f"{where}.weight_decay",
            "must be non-negative",
        )
        require(
            self.precision in ("auto", "bf16", "fp32"),
            f"{where}.precision",
            f"expected auto, bf16 or fp32, got {self.precision!r}",
        )
        require(self.eval_batch_size >= 1, f"{where}.eval_batch_size", "must be at least 1")
        for i, lr in enumerate(self.grid):
            require(lr > 0, f"{where}.lr_grid[{i}]", f"a learning rate must be positive, got {lr}")
        require(len(set(self.grid)) == len(self.grid), f"{where}.lr_grid", "a learning rate is listed twice")
        require(
            self.lr_search in ("grid", "halving"),
            f"{where}.lr_search",
            f"expected grid or halving, got {self.lr_search!r}",
        )
        require(self.dev_every >= 0, f"{where}.dev_every", f"must be 0 (off) or more, got {self.dev_every}")
        require(
            self.early_stopping is None or self.dev_every > 0,
            f"{where}.early_stopping",
            "stops on the dev curve, so it needs dev_every (score the dev split every N steps), e.g. "
            "dev_every: 50",
        )
        require(
            self.checkpoint_every >= 0,
            f"{where}.checkpoint_every",
            f"must be 0 (off) or more, got {self.checkpoint_every}",
        )

    @property
    def grid(self) -> list[float]:
        """The learning rates to search (empty for `auto` before a method's recipe resolved it)."""
        return [] if isinstance(self.lr_grid, str) else list(self.lr_grid)

    def with_recipe(self, recipe: Any) -> Budget:
        """Every field left unset filled from a method's recipe (methods/base.py `Recipe`); a method that
        does not train has none, and its training fields stay unset."""
        if recipe is None:
            return dataclasses.replace(self, lr_grid=self.grid)
        return dataclasses.replace(
            self,
            lr=recipe.lr if self.lr is None else self.lr,
            warmup=recipe.warmup if self.warmup is None else self.warmup,
            weight_decay=recipe.weight_decay if self.weight_decay is None else self.weight_decay,
            lr_grid=list(recipe.lr_grid) if self.lr_grid == AUTO else self.grid,
        )

    def filled(self) -> Budget:
        """Unset training fields at tunebench's generic values: for a budget built in code without a method
        (a spec always resolves them from the method's recipe, see `with_recipe`)."""
        return dataclasses.replace(
            self,
            lr=GENERIC["lr"] if self.lr is None else self.lr,
            warmup=GENERIC["warmup"] if self.warmup is None else self.warmup,
            weight_decay=GENERIC["weight_decay"] if self.weight_decay is None else self.weight_decay,
        )


#: `lr_grid: auto`: search the method's own grid.
AUTO = "auto"
#: The values every method shared before methods declared recipes; only budgets built in code use them.
GENERIC = {"lr": 1e-3, "warmup": 0.1, "weight_decay": 0.0}


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
        from tunebench.report.recommend import parse_memory

        return None if self.memory is None else parse_memory(self.memory, f"{where}.memory")


@dataclass
class MethodSpec:
    name: str
    options: Any
    """The method's own options dataclass, validated."""
    budget: Budget
    """The experiment budget with this method's overrides applied."""
    overrides: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    """The experiment's resources with this method's `resources:` entries applied."""


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "models": self.models,
            "task": {"name": self.task.name, **self.task.options},
            "methods": [
                {"name": m.name, **dataclasses.asdict(m.options), **m.overrides, **_resources_entry(m, self)}
                for m in self.methods
            ],
            "seeds": self.seeds,
            "budget": dataclasses.asdict(self.budget),
            "resources": dataclasses.asdict(self.resources),
            "out": self.out,
        }


def _resources_entry(method: MethodSpec, spec: ExperimentSpec) -> dict[str, Any]:
    """A method's own `resources:` entry, where it differs from the experiment's."""
    if method.resources == spec.resources:
        return {}
    return {"resources": dataclasses.asdict(method.resources)}


SPEC_KEYS = ["name", "models", "task", "methods", "seeds", "budget", "resources", "out"]
_TASK_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


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


def parse_spec(data: dict[str, Any], source: str = "<flags>") -> ExperimentSpec:
    """Validate a spec given as plain data (from YAML, merged with flags)."""
    from tunebench.errors import did_you_mean

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
        source=source,
    )


def parse_task(value: Any, where: str) -> TaskSpec:
    from tunebench.tasks import TASKS

    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise SpecError(f"{where}: expected a task name or a mapping with 'name'")
    options = {k: v for k, v in value.items() if k != "name"}
    name = str(value["name"])
    if name not in TASKS and name.lower().endswith(_TASK_SUFFIXES):
        options.setdefault("path", name)  # a data file given directly as the task
        name = "file"
    TASKS.get(name)  # unknown names fail here, with close matches
    build(
        TASKS.get(name).options, options, where
    )  # options are checked now; data is read when the run starts
    return TaskSpec(name=name, options=options)


def parse_method(value: Any, budget: Budget, where: str, resources: Resources | None = None) -> MethodSpec:
    from tunebench.objectives import method_class, option_groups, split_name

    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise SpecError(f"{where}: expected a method name or a mapping with 'name'")
    name = str(value["name"])
    try:
        method_cls = method_class(name)  # `lora+dpo`: a method composed with a training objective
    except (SpecError, UnknownNameError) as e:
        if "+" not in name:
            raise
        raise type(e)(f"{where}: {e}") from None
    budget_keys = set(field_names(Budget))
    option_keys = set(field_names(method_cls.Options))
    options = {k: v for k, v in value.items() if k in option_keys}
    overrides = {k: v for k, v in value.items() if k in budget_keys and k not in option_keys}
    unknown = [
        k for k in value if k not in ("name", "resources") and k not in option_keys and k not in budget_keys
    ]
    if unknown:
        from tunebench.errors import did_you_mean

        allowed = sorted(option_keys | budget_keys | {"resources"})
        method_keys, objective_keys = option_groups(name)
        objective = split_name(name)[1]
        raise SpecError(
            f"{where} ({name}): unknown key {unknown[0]!r}.{did_you_mean(unknown[0], allowed)} "
            f"Method options: {', '.join(sorted(method_keys)) or '(none)'}; "
            + (f"{objective} options: {', '.join(sorted(objective_keys)) or '(none)'}; " if objective else "")
            + f"budget overrides: {', '.join(sorted(budget_keys))}"
        )
    opts = build(method_cls.Options, options, f"{where} ({name})")
    method_budget = build(Budget, {**dataclasses.asdict(budget), **overrides}, f"{where} ({name})")
    method_budget = method_budget.with_recipe(method_cls.recipe)
    require(
        method_budget.early_stopping is None or getattr(method_cls, "objective_name", None) is None,
        f"{where} ({name}).early_stopping",
        "an objective trains in phases (supervised steps, then its own); early stopping works on methods "
        "trained on the task's targets alone",
    )
    if hasattr(opts, "check_budget"):  # an objective whose options constrain the batch (rl's groups)
        opts.check_budget(method_budget, f"{where} ({name})")
    own = value.get("resources") or {}
    if not isinstance(own, dict):
        raise SpecError(f"{where} ({name}).resources: expected a mapping of cpus, gpus, memory")
    base = dataclasses.asdict(resources or Resources())
    method_resources = build(Resources, {**base, **own}, f"{where} ({name}).resources")
    return MethodSpec(
        name=name, options=opts, budget=method_budget, overrides=overrides, resources=method_resources
    )


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, list | tuple) else [value]


def _str_list(value: Any, where: str) -> list[str]:
    items = _as_list(value)
    for item in items:
        require(isinstance(item, str) and item != "", where, f"expected model names, got {item!r}")
    return items
