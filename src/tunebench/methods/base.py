"""The method contract: prepare → fit → predict → export, met by prompting and training alike.

Shared code (the runner, the report) never asks a method's name; it asks what the method declares:
whether it trains, what it updates, what access it needs, and whether it fits a task and model.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from tunebench.core.errors import UnsupportedError
from tunebench.core.registry import Registry
from tunebench.methods.cost import Cost
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks.base import Splits, Task
from tunebench.train.budget import Budget
from tunebench.train.checkpoint import Checkpointer
from tunebench.train.loop import OnStep, TrainStats


@dataclass
class NoOptions:
    """This method has no options of its own."""


@dataclass(frozen=True)
class Recipe:
    """A method's own training defaults, used for every budget field a spec leaves unset.

    One learning rate for every method measures the learning rate as much as the method (full fine-tuning
    of a BERT-class encoder at LoRA's 1e-3 fails), so each training method states its own, with where the
    value comes from. `lr_grid` is what `lr_grid: auto` searches: a few rates around the default, spaced
    about 3x apart (the search extends it when the winner sits at an edge).
    """

    lr: float
    lr_grid: tuple[float, ...]
    weight_decay: float = 0.0
    warmup: float = 0.1
    source: str = ""
    """Where these values come from: a paper, a library's default, or our own measurement (on which data)."""


@dataclass
class Context:
    """Everything a method needs for one run."""

    model: ResolvedModel
    task: Task
    splits: Splits
    budget: Budget
    seed: int
    device: torch.device
    bf16: bool
    on_train_step: OnStep | None = None
    on_eval_batch: Callable[[int], None] | None = None
    folder: Path | None = None
    """The run's folder, for files an objective writes beside the result (teacher data, preference pairs);
    None outside a recorded run (learning-rate selection)."""
    checkpoint: Checkpointer | None = None
    """Where a training loop saves and finds its resume state (None: no checkpoints, e.g. lr selection)."""


class TrainingObjective(Protocol):
    """What a trainable method is trained on, when not the task's gold targets (objectives/: distillation,
    DPO, RL). The method holds it and its `fit` hands over to it (`lora+dpo` is LoRA holding DPO)."""

    @property
    def name(self) -> str: ...

    info: dict[str, Any]
    """What result.json records under `objective` (the data built and dropped, the phases)."""

    def check(self, task: Task, model: ResolvedModel) -> None: ...

    def max_new_tokens(self, task: Task, default: int) -> int: ...

    def final_answer(self, text: str) -> str: ...

    @property
    def trains_in_loop(self) -> bool:
        """Whether it trains through tunebench's own loop (which runs a method's `train_hook`), rather than
        another library's trainer (TRL's, for DPO and RL)."""
        ...

    def fit(self, method: Any, ctx: Context) -> TrainStats: ...

    def state(self) -> dict[str, Any]:
        """What the trained model's answers depend on besides its weights (saved beside the artifact)."""
        ...

    def load_state(self, state: dict[str, Any]) -> None: ...


class Method(ABC):
    name: ClassVar[str]
    updates: ClassVar[str]
    """What the method changes, in words ('nothing', 'all weights', 'low-rank adapters')."""
    access: ClassVar[str]
    """black box (text in, text out), gray box (log-probs) or white box (weights)."""
    summary: ClassVar[str]
    trains: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions
    recipe: ClassVar[Recipe | None] = None
    """The training defaults (every method that trains declares one; `tunebench methods` lists them)."""
    cost: ClassVar[Cost | None] = None
    """What it costs at any size, for the estimator (methods/cost.py); every registered method declares one."""
    objective: TrainingObjective | None = None
    """The training objective this method hands its `fit` to (None: the task's gold targets)."""

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()
        self.train_stats: TrainStats | None = None
        self.truncated = 0

    def check(self, task: Task, model: ResolvedModel) -> None:
        """Raise UnsupportedError when this method cannot run on this task and model."""

    @abstractmethod
    def prepare(self, ctx: Context) -> None: ...

    def fit(self, ctx: Context) -> TrainStats | None:
        return None

    @abstractmethod
    def predict(self, ctx: Context, inputs: list[str]) -> list[str]: ...

    @abstractmethod
    def export(self, folder: Path) -> None:
        """Write the artifact that reproduces this method's predictions on top of the base model."""

    @abstractmethod
    def load_artifact(self, folder: Path) -> None:
        """After `prepare`, restore the trained state that `export` wrote (fresh object, same predictions)."""

    def save(self, folder: Path) -> None:
        """Write the artifact (`export`) and, for a method trained by an objective, the objective's state
        that its answers depend on (objective.json: an explanation-trained model's generation length)."""
        self.export(folder)
        if self.objective is not None:
            write_json(folder / OBJECTIVE_STATE, {"objective": self.objective.name, **self.objective.state()})

    def restore(self, folder: Path) -> None:
        """After `prepare`, put back what `save` wrote: a fresh object then gives the same predictions."""
        self.load_artifact(folder)
        path = folder / OBJECTIVE_STATE
        if self.objective is not None and path.exists():
            self.objective.load_state(json.loads(path.read_text(encoding="utf-8")))

    @abstractmethod
    def param_counts(self) -> tuple[int, int | None]:
        """(trainable, total) parameters, exact; total is None when unknown (a model behind an API)."""

    # Optional capabilities, asked for by shared code (latency, drift) instead of testing method names.

    def merge(self) -> bool:
        """Fold trained weights into the base for serving (LoRA family); False when there is nothing to merge."""
        return False

    def trainable_state(self) -> dict[str, torch.Tensor] | None:
        """A copy of what training changes, to restore the best dev state after early stopping; None when the
        method cannot give one (then the last state is kept, and the run records that)."""
        return None

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put back a state that `trainable_state` returned."""
        raise NotImplementedError

    def info(self) -> dict[str, Any] | None:
        """What the method chose while preparing that result.json records under `method_info` (the matrices
        `partial` picked by their signal-to-noise ratio, the matrices GaLore projects); None: nothing."""
        return None

    def usage(self) -> dict[str, Any] | None:
        """What the last `predict` cost at an API (requests, tokens, latency) when the method asked an
        endpoint for its answers; None for a model run here (its costs are parameters, memory, time)."""
        return None

    def text_nll(self, texts: list[str], ctx: Context) -> float | None:
        """Mean per-token negative log-likelihood of `texts` under this method's model, or None when the method
        has no language model to ask (a probe, for example)."""
        return None


METHODS: Registry[type[Method]] = Registry("method")
#: Beside the artifact of a method trained by an objective: the objective's state (`Method.save`).
OBJECTIVE_STATE = "objective.json"

#: From least to most: text in and out, log-probabilities, the weights.
ACCESS_LEVELS = ("black box", "gray box", "white box")


def require_access(method: Method, model: ResolvedModel) -> None:
    """Refuse a method that needs more of a model than the model gives (an endpoint gives text only)."""
    if ACCESS_LEVELS.index(method.access) > ACCESS_LEVELS.index(model.access):
        raise UnsupportedError(
            f"{method.name} needs {method.access} access (it updates {method.updates}), but {model.name} is "
            f"an {model.kind} that gives {model.access} access (text in, text out); only the prompting "
            "methods (zero-shot, few-shot) run on it"
        )


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total); tied weights (shared embedding and head) count once, and a 4-bit quantized
    weight counts its logical shape, not its packed storage."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(_logical_numel(p) for p in model.parameters())
    return trainable, total


def _logical_numel(p: torch.Tensor) -> int:
    # bitsandbytes' Params4bit stores two 4-bit weights a byte: numel() is half the weight's own count,
    # which made QLoRA's trainable share look larger (5.7% for SmolLM2 against LoRA's 3.6%).
    state = getattr(p, "quant_state", None)
    shape = getattr(state, "shape", None)
    return math.prod(shape) if shape is not None else p.numel()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
