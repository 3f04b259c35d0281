"""Serving a prompting run: the base model, with the run's instruction and shots put before the request.

A prompting artifact (`prompt.json`) holds the shots; the instruction and the way a question is phrased
belong to the task, which is rebuilt from the run's recorded task config. The request brings the question
as the task phrases it (what `task.prompt(input)` gives, e.g. "123 + 456 ="), just as a client of a LoRA
run sends the prompt the adapter was trained on; the server adds only what the artifact holds.

Chat requests get the shots as earlier chat turns, the instruction in the first user turn, as
`methods/prompting.py` renders them; completion requests get the plain form, one "question answer" line
per shot after the instruction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunebench.core.errors import TunebenchError
from tunebench.serve.artifacts import Artifact, ArtifactError, read_prompt
from tunebench.tasks import build_task


@dataclass(frozen=True)
class PromptTemplate:
    instruction: str
    shots: tuple[tuple[str, str], ...]
    """(question as the task phrases it, answer)."""

    def chat(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The shots as earlier turns before the client's messages (after any system message)."""
        system = [m for m in messages[:1] if m["role"] == "system"]
        rest = messages[len(system) :]
        turns: list[dict[str, Any]] = []
        for i, (question, answer) in enumerate(self.shots):
            text = f"{self.instruction}\n\n{question}" if i == 0 and self.instruction else question
            turns += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        if not self.shots and self.instruction and rest and rest[0]["role"] == "user":
            rest = [{**rest[0], "content": f"{self.instruction}\n\n{rest[0]['content']}"}, *rest[1:]]
        return [*system, *turns, *rest]

    def plain(self, prompt: str) -> str:
        lines = [self.instruction, ""] if self.instruction else []
        lines += [f"{q} {a}" for q, a in self.shots]
        return "\n".join([*lines, prompt])


def template_for(artifact: Artifact) -> PromptTemplate:
    """The template of a prompting artifact; the task is rebuilt from the run record when there is one."""
    data = read_prompt(artifact.path)
    task = _task(artifact)
    phrase = task.prompt if task is not None else (lambda text: text)
    instruction = task.instruction if task is not None else data.get("instruction", "")
    return PromptTemplate(instruction, tuple((phrase(s["input"]), s["target"]) for s in data["shots"]))


def _task(artifact: Artifact):
    """The run's task, or None when the artifact came without a run record."""
    task_config = (artifact.run.get("config") or {}).get("task")
    if not task_config:
        return None

    recorded = {"name", "registered_as", "data_fingerprint", "sizes"}
    options = {k: v for k, v in task_config.items() if k not in recorded}
    try:
        return build_task(task_config.get("registered_as", task_config["name"]), options, "task")
    except TunebenchError as e:
        raise ArtifactError(
            f"{artifact.path}: the run's task cannot be rebuilt to phrase its shots ({e})"
        ) from None
