"""How a model teacher (local or behind an endpoint) is asked, and how its answer is read back.

A template is a Python format string with the placeholders {input} (the raw input), {prompt} (the task's
plain prompt, e.g. "357 + 468 =") and {instruction} (what the task tells a prompted model to do). Asked
for an explanation, the teacher gets a "think step by step" template that asks for a last line
"Answer: ..."; the answer is then read from what follows the last "answer" marker, or from the whole
output when there is none, by the task's own extraction (the last number, for arithmetic).
"""

from __future__ import annotations

import re
import string

from tunebench.core.errors import SpecError, did_you_mean
from tunebench.core.typed import require
from tunebench.tasks.base import Task

PLACEHOLDERS = ("input", "prompt", "instruction")

ANSWER_TEMPLATE = "{instruction}\n\n{prompt}"
"""The default for answers: how zero-shot prompting asks (the task's instruction, then its prompt)."""

EXPLAIN_TEMPLATE = (
    "Solve the problem step by step, then write the final answer on its own last line as "
    "'Answer: <answer>'.\n\nProblem: {input}\nSolution:"
)
"""The default for explanations (zero-shot chain of thought, with a marked final line)."""

_ANSWER_MARKER = re.compile(r"\banswer(?:\s+is)?\s*[:=]?", re.IGNORECASE)


def check_template(template: str | None, where: str) -> None:
    """A SpecError naming `where` for an unknown placeholder or a template that never names the input."""
    if template is None:
        return
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise SpecError(
            f"{where}: not a valid template ({e}); write a literal brace as {{{{ or }}}}"
        ) from None
    expected = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    for name in sorted(fields - set(PLACEHOLDERS)):
        raise SpecError(
            f"{where}: unknown placeholder {{{name}}}.{did_you_mean(name, PLACEHOLDERS)} Expected {expected}"
        )
    require(bool(fields & {"input", "prompt"}), where, "the template must contain {input} or {prompt}")


def render(template: str, task: Task, text: str) -> str:
    return template.format(input=text, prompt=task.prompt(text), instruction=task.instruction)


def read_answer(task: Task, output: str, *, explain: bool) -> str | None:
    """The task's answer in a teacher's output, or None when there is none (or it is not one of the
    task's labels): such outputs are counted and dropped by the caller, never trained on."""
    part = output
    if explain:
        markers = list(_ANSWER_MARKER.finditer(output))
        if markers and output[markers[-1].end() :].strip():
            part = output[markers[-1].end() :]
    answer = task.answer(part).strip()
    if not answer:
        return None
    if task.labels is not None and answer not in task.labels:
        return None
    return answer
