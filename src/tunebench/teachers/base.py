"""The teacher contract: something that answers (and, asked to, explains) a task's inputs.

Distillation (`distill:alpaca`, `distill:orca`) trains a student on what a teacher wrote, and DPO can take
a teacher's answer as the chosen side of a pair. A teacher is one of:

- `oracle`: the task itself, for built-in tasks that can compute and explain their answers;
- `local`: any model tunebench can load, generating with a prompt template;
- `openai`: any OpenAI-compatible endpoint (the black-box case), batched, retried and cached on disk.

Each registers itself in `TEACHERS` with an options dataclass, like methods and tasks do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from tunebench.core.registry import Registry
from tunebench.core.typed import build

if TYPE_CHECKING:
    from tunebench.tasks.base import Task


@dataclass
class TeacherOutput:
    """What a teacher wrote for one input."""

    text: str
    """Everything the teacher produced (kept with the run's generated training set)."""
    answer: str | None
    """The final answer read from `text` by the task's own answer extraction; None when unparseable
    (such examples are counted, reported and never trained on)."""
    explanation: str | None = None
    """The step-by-step trace that leads to the answer, when the teacher was asked to explain and did."""


@dataclass
class NoTeacherOptions:
    def check(self, where: str) -> None:
        pass


class Teacher(ABC):
    name: ClassVar[str]
    Options: ClassVar[type] = NoTeacherOptions
    summary: ClassVar[str] = ""

    def __init__(self, options: object | None = None) -> None:
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def teach(self, task: Task, inputs: list[str], *, explain: bool) -> list[TeacherOutput]:
        """One output per input, in order. With `explain`, ask for the reasoning before the answer."""


TEACHERS: Registry[type[Teacher]] = Registry("teacher")


def build_teacher(name: str, options: dict[str, Any] | None = None, where: str = "teacher") -> Teacher:
    """The registered teacher `name` with its options checked (errors name `where` and the key)."""
    cls = TEACHERS.get(name)
    return cls(build(cls.Options, options or {}, where))
