"""The task contract: splits, a plain prompt, answer extraction, and scoring."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from tunebench.core.registry import Registry
from tunebench.core.typed import build
from tunebench.tasks.metrics import Scores, score_classification, score_exact_match

Kind = Literal["generation", "classification"]


@dataclass(frozen=True)
class Example:
    input: str
    target: str


@dataclass
class Splits:
    train: list[Example]
    dev: list[Example]
    test: list[Example]

    def fingerprint(self) -> str:
        """A short hash of the data, so caches and run records can tell data sets apart."""
        h = hashlib.sha256()
        for name in ("train", "dev", "test"):
            for ex in getattr(self, name):
                h.update(json.dumps([name, ex.input, ex.target]).encode())
        return h.hexdigest()[:16]

    def overlap(self) -> dict[str, int]:
        """Leakage: how many dev and test examples have an input (whitespace-stripped) that an earlier
        split also holds."""
        train = {e.input.strip() for e in self.train}
        dev = {e.input.strip() for e in self.dev}
        return {
            "dev_in_train": sum(e.input.strip() in train for e in self.dev),
            "test_in_train": sum(e.input.strip() in train for e in self.test),
            "test_in_dev": sum(e.input.strip() in dev and e.input.strip() not in train for e in self.test),
        }


class Task(ABC):
    """A task knows its data, how to ask for an answer, and how to score one.

    `prompt(x)` is the plain text a trained model sees before its answer; `instruction` tells a
    prompted model what to do. Targets are trained as `prompt(x) + " " + target`.
    """

    name: str
    kind: Kind = "generation"
    instruction: str = "Answer the question."
    #: Tokens a trained model needs to write its answer (prompting methods allow more).
    max_new_tokens: int = 32

    @abstractmethod
    def splits(self) -> Splits: ...

    def prompt(self, text: str) -> str:
        return f"{text}\nAnswer:"

    def answer(self, generated: str) -> str:
        """The final answer inside a model's output (first line, whitespace-normalized)."""
        lines = [line for line in generated.strip().splitlines() if line.strip()]
        return " ".join(lines[0].split()) if lines else ""

    def solve(self, text: str) -> str | None:
        """The gold answer to any input, computed; None for tasks that only know their data (files)."""
        return None

    def explain(self, text: str) -> str | None:
        """A step-by-step solution that continues `prompt(text)` and ends with the final answer (so that
        `answer` reads it); None for tasks that cannot explain (the oracle teacher then refuses)."""
        return None

    @property
    def labels(self) -> list[str] | None:
        return None

    def score(self, predictions: list[str], targets: list[str]) -> Scores:
        answers = [self.answer(p) for p in predictions]
        gold = [self.answer(t) for t in targets]
        if self.kind == "classification":
            return score_classification(answers, gold, self.labels or sorted(set(gold)))
        return score_exact_match(answers, gold)

    def describe(self) -> dict[str, Any]:
        """What the run record says about the task (options, sizes, label set)."""
        info: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.labels is not None:
            info["labels"] = self.labels
        return info


@dataclass
class TaskEntry:
    """A registered task: its options dataclass and a factory from those options."""

    options: type
    factory: Any
    summary: str
    examples: list[str] = field(default_factory=list)


TASKS: Registry[TaskEntry] = Registry("task")


def build_task(name: str, options: dict[str, Any] | None = None, where: str = "task") -> Task:
    entry = TASKS.get(name)
    opts: Any = build(entry.options, options or {}, where)  # the entry's own options dataclass
    return entry.factory(opts)
