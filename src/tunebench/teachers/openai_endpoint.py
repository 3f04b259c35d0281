"""The `openai` teacher: any OpenAI-compatible endpoint, the black-box case (see endpoint.py).

Each input becomes one request, rendered with the teacher's template (see templates.py): as a user turn
with the chat API, as plain text with the completions API. Requests run concurrently within
`max_concurrency`, are retried with back-off and cached on disk, so asking again costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunebench.core.typed import require
from tunebench.endpoints.client import ConnectionOptions, Endpoint, chat_request, completion_request
from tunebench.tasks.base import Task
from tunebench.teachers.base import TEACHERS, Teacher, TeacherOutput
from tunebench.teachers.templates import (
    ANSWER_TEMPLATE,
    EXPLAIN_TEMPLATE,
    check_template,
    read_answer,
    render,
)

#: Room for a step-by-step explanation; a short answer gets twice the task's answer length (at least 32).
EXPLAIN_MAX_TOKENS = 512


@dataclass
class OpenAITeacherOptions(ConnectionOptions):
    template: str | None = None
    """How an answer is asked for; placeholders {input}, {prompt}, {instruction}. Default: the task's
    instruction, a blank line, then its prompt."""
    explain_template: str | None = None
    """How an explanation is asked for. Default: step by step, ending with a line 'Answer: ...'."""
    max_tokens: int | None = None
    """Tokens per response. Default: 512 for an explanation, else twice the task's answer length."""
    temperature: float = 0.0

    def check(self, where: str) -> None:
        super().check(where)
        check_template(self.template, f"{where}.template")
        check_template(self.explain_template, f"{where}.explain_template")
        require(self.max_tokens is None or self.max_tokens >= 1, f"{where}.max_tokens", "must be at least 1")
        require(self.temperature >= 0, f"{where}.temperature", "must be 0 or more")


@TEACHERS.register("openai")
class OpenAITeacher(Teacher):
    name = "openai"
    Options = OpenAITeacherOptions
    options: OpenAITeacherOptions
    summary = "any OpenAI-compatible endpoint (base_url, model; key from the environment), cached on disk"

    def __init__(self, options: OpenAITeacherOptions | None = None) -> None:
        super().__init__(options)
        self.endpoint = Endpoint(self.options)

    def requests(self, task: Task, inputs: list[str], *, explain: bool) -> list[dict]:
        o = self.options
        template = (o.explain_template or EXPLAIN_TEMPLATE) if explain else (o.template or ANSWER_TEMPLATE)
        max_tokens = o.max_tokens or (EXPLAIN_MAX_TOKENS if explain else max(32, 2 * task.max_new_tokens))
        texts = [render(template, task, text) for text in inputs]
        if o.api == "chat":
            return [
                chat_request(
                    [{"role": "user", "content": t}], max_tokens=max_tokens, temperature=o.temperature
                )
                for t in texts
            ]
        # Plain text: a short answer ends at the end of its line, as few-shot prompting reads it.
        stop = None if explain else ["\n"]
        return [
            completion_request(t, max_tokens=max_tokens, temperature=o.temperature, stop=stop) for t in texts
        ]

    def teach(self, task: Task, inputs: list[str], *, explain: bool) -> list[TeacherOutput]:
        completions = self.endpoint.complete(self.requests(task, inputs, explain=explain))
        return [
            TeacherOutput(
                text=c.text.strip(),
                answer=read_answer(task, c.text, explain=explain),
                explanation=c.text.strip() if explain else None,
            )
            for c in completions
        ]
