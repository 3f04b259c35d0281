"""The typed experiment spec. YAML files and command-line flags are only two ways of writing it.

A spec is validated completely (models, task, methods and their options, budget) before anything is
written, and every error names the key or flag at fault.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunebench.errors import SpecError
from tunebench.typed import build, coerce, field_names, require


@dataclass
class Budget:
    """The training budget, identical for every trained method unless a method entry overrides a field."""

    steps: int = 150
    """Optimizer steps per trained run (ignored when `epochs` is set)."""
    epochs: float | None = None
    """Passes over the training split; when set, replaces `steps`."""
    batch_size: int = 32
    """Examples per optimizer step (before gradient accumulation)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step; effective batch = batch_size × grad_accum."""
    max_length: int = 256
    """Longest tokenized example (prompt + target); longer ones are truncated from the left of the prompt."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    warmup: float = 0.1
    """Fraction of the steps spent warming up linearly to `lr`, then cosine decay."""
    weight_decay: float = 0.0
    precision: str = "auto"
    """auto (bf16 autocast where the CPU or GPU supports it), bf16, or fp32."""
    eval_batch_size: int = 64
    """Examples per generation batch at evaluation."""
    lr_grid: list[float] = field(default_factory=list)
    """Learning rates to choose from on the dev split before the final runs (empty: train with `lr`).
    Opt-in because each candidate costs a training run; methods that do not train skip it."""
    lr_search: str = "grid"
    """grid (every candidate gets the whole budget) or halving (successive halving: all candidates get a
    fraction of the steps, the better half on dev goes on with twice as many, until one is left)."""
    dev_every: int = 0
    """Score the dev split every N optimizer steps for the learning curve (0: never). Costs one dev
    evaluation each time; that time is left out of the training time."""

    def check(self, where: str) -> None:
        require(self.steps >= 1, f"{where}.steps", f"must be at least 1, got {self.steps}")
        require(
            self.epochs is None or self.epochs > 0, f"{where}.epochs", f"must be positive, got {self.epochs}"
        )
        require(self.batch_size >= 1, f"{where}.batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.grad_accum >= 1, f"{where}.grad_accum", f"must be at least 1, got {self.grad_accum}")
        require(self.max_length >= 8, f"{where}.max_length", f"must be at least 8, got {self.max_length}")
        require(self.lr > 0, f"{where}.lr", f"the learning rate must be positive, got {self.lr}")
        require(
            0 <= self.warmup < 1, f"{where}.warmup", f"a fraction in [0, 1) is expected, got {self.warmup}"
        )
        require(self.weight_decay >= 0, f"{where}.weight_decay", "must be non-negative")
        require(
            self.precision in ("auto", "bf16", "fp32"),
            f"{where}.precision",
            f"expected auto, bf16 or fp32, got {self.precision!r}",
        )
        require(self.eval_batch_size >= 1, f"{where}.eval_batch_size", "must be at least 1")
        for i, lr in enumerate(self.lr_grid):
            require(lr > 0, f"{where}.lr_grid[{i}]", f"a learning rate must be positive, got {lr}")
        require(
            len(set(self.lr_grid)) == len(self.lr_grid), f"{where}.lr_grid", "a learning rate is listed twice"
        )
        require(
            self.lr_search in ("grid", "halving"),
            f"{where}.lr_search",
            f"expected grid or halving, got {self.lr_search!r}",
        )
        require(self.dev_every >= 0, f"{where}.dev_every", f"must be 0 (off) or more, got {self.dev_every}")


@dataclass
class MethodSpec:
    name: str
    options: Any
    """The method's own options dataclass, validated."""
    budget: Budget
    """The experiment budget with this method's overrides applied."""
    overrides: dict[str, Any] = field(default_factory=dict)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "models": self.models,
            "task": {"name": self.task.name, **self.task.options},
            "methods": [
                {"name": m.name, **dataclasses.asdict(m.options), **m.overrides} for m in self.methods
            ],
            "seeds": self.seeds,
            "budget": dataclasses.asdict(self.budget),
            "out": self.out,
        }


SPEC_KEYS = ["name", "models", "task", "methods", "seeds", "budget", "out"]
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
    methods = [
        parse_method(m, budget, f"{source}: methods[{i}]") for i, m in enumerate(_as_list(data["methods"]))
    ]
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    require(not dupes, f"{source}: methods", f"{', '.join(dupes)} listed twice")
    seeds = coerce(data.get("seeds", [0]), list[int], f"{source}: seeds")
    require(bool(seeds), f"{source}: seeds", "give at least one seed")
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


def parse_method(value: Any, budget: Budget, where: str) -> MethodSpec:
    from tunebench.methods import METHODS

    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise SpecError(f"{where}: expected a method name or a mapping with 'name'")
    name = str(value["name"])
    method_cls = METHODS.get(name)
    budget_keys = set(field_names(Budget))
    option_keys = set(field_names(method_cls.Options))
    options = {k: v for k, v in value.items() if k in option_keys}
    overrides = {k: v for k, v in value.items() if k in budget_keys and k not in option_keys}
    unknown = [k for k in value if k != "name" and k not in option_keys and k not in budget_keys]
    if unknown:
        from tunebench.errors import did_you_mean

        allowed = sorted(option_keys | budget_keys)
        raise SpecError(
            f"{where} ({name}): unknown key {unknown[0]!r}.{did_you_mean(unknown[0], allowed)} "
            f"Method options: {', '.join(sorted(option_keys)) or '(none)'}; "
            f"budget overrides: {', '.join(sorted(budget_keys))}"
        )
    opts = build(method_cls.Options, options, f"{where} ({name})")
    method_budget = build(Budget, {**dataclasses.asdict(budget), **overrides}, f"{where} ({name})")
    return MethodSpec(name=name, options=opts, budget=method_budget, overrides=overrides)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, list | tuple) else [value]


def _str_list(value: Any, where: str) -> list[str]:
    items = _as_list(value)
    for item in items:
        require(isinstance(item, str) and item != "", where, f"expected model names, got {item!r}")
    return items
