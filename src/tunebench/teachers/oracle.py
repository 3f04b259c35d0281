"""The oracle teacher: the task itself answers, and explains when it knows how.

Built-in tasks that compute their answers (arithmetic) answer any input and explain it step by step
(`Task.solve`, `Task.explain`). Tasks that only know their data (the user's files) answer with the gold
target of inputs found in their splits; they cannot explain, and asking them to is refused.
"""

from __future__ import annotations

from tunebench.core.errors import UnsupportedError
from tunebench.tasks.base import Task
from tunebench.teachers.base import TEACHERS, Teacher, TeacherOutput


@TEACHERS.register("oracle")
class OracleTeacher(Teacher):
    name = "oracle"
    summary = "the task itself: gold answers, and step-by-step explanations for built-in tasks (arithmetic)"

    def teach(self, task: Task, inputs: list[str], *, explain: bool) -> list[TeacherOutput]:
        if explain:
            if not _can_explain(task):
                raise UnsupportedError(
                    f"teacher 'oracle' cannot explain task {task.name!r}: only built-in tasks that compute "
                    "their answers (arithmetic) have step-by-step explanations. Use distill:alpaca (final "
                    "answers), or a 'local' or 'openai' teacher to write explanations."
                )
            return [_explained(task, text) for text in inputs]
        gold = _gold_targets(task) if any(task.solve(text) is None for text in inputs) else {}
        outputs = []
        for text in inputs:
            target = task.solve(text)
            target = target if target is not None else gold.get(text)
            if target is None:  # not one of this task's inputs: the caller counts it as unanswered
                outputs.append(TeacherOutput(text="", answer=None))
            else:
                outputs.append(TeacherOutput(text=target, answer=task.answer(target) or None))
        return outputs


def _explained(task: Task, text: str) -> TeacherOutput:
    trace = task.explain(text)
    if trace is None:  # an input the task cannot parse
        return TeacherOutput(text="", answer=None)
    return TeacherOutput(text=trace, answer=task.answer(trace) or None, explanation=trace)


def _can_explain(task: Task) -> bool:
    """Whether the task's class overrides `Task.explain` (a file task does not)."""
    return type(task).explain is not Task.explain


def _gold_targets(task: Task) -> dict[str, str]:
    """Input → gold target over every split (the first one seen wins when an input repeats)."""
    splits = task.splits()
    gold: dict[str, str] = {}
    for examples in (splits.train, splits.dev, splits.test):
        for ex in examples:
            gold.setdefault(ex.input, ex.target)
    return gold
