"""The local teacher: any decoder tunebench can load, generating greedily from a prompt template.

The model is resolved like a contestant (a packaged name, a folder, a hub id) and loaded once, on the first
`teach`. A chat model (its tokenizer has a chat template) gets the rendered template as a user turn; a
base model continues the plain text, and a short answer stops at the end of its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunebench.core.errors import UnsupportedError
from tunebench.core.typed import require
from tunebench.evaluate.generate import generate
from tunebench.models.load import load_causal_lm, load_tokenizer
from tunebench.models.zoo import resolve_model
from tunebench.tasks.base import Task
from tunebench.teachers.base import TEACHERS, Teacher, TeacherOutput
from tunebench.teachers.templates import (
    ANSWER_TEMPLATE,
    EXPLAIN_TEMPLATE,
    check_template,
    read_answer,
    render,
)
from tunebench.train.device import pick_device, use_bf16

#: Room for a step-by-step explanation (an answer alone gets the task's own `max_new_tokens`).
EXPLAIN_NEW_TOKENS = 256


@dataclass
class LocalTeacherOptions:
    model: str = ""
    """The teacher model: a packaged name (`tunebench models`), a Hugging Face folder or a hub id."""
    template: str | None = None
    """How an answer is asked for; placeholders {input}, {prompt}, {instruction}. Default: the task's
    instruction, a blank line, then its prompt (as zero-shot prompting asks)."""
    explain_template: str | None = None
    """How an explanation is asked for (same placeholders). Default: step by step, ending 'Answer: ...'."""
    chat: str = "auto"
    """Wrap the prompt in the tokenizer's chat template: auto (when it has one), yes or no."""
    batch_size: int = 16
    max_new_tokens: int | None = None
    """Tokens generated per input. Default: the task's answer length, or 256 for an explanation."""
    precision: str = "auto"
    """auto (bf16 where the device is faster in it), bf16 or fp32."""

    def check(self, where: str) -> None:
        require(
            bool(self.model), f"{where}.model", "the local teacher needs a model (model=NAME or a folder)"
        )
        check_template(self.template, f"{where}.template")
        check_template(self.explain_template, f"{where}.explain_template")
        require(
            self.chat in ("auto", "yes", "no"),
            f"{where}.chat",
            f"expected auto, yes or no, got {self.chat!r}",
        )
        require(self.batch_size >= 1, f"{where}.batch_size", "must be at least 1")
        require(
            self.max_new_tokens is None or self.max_new_tokens >= 1,
            f"{where}.max_new_tokens",
            "must be at least 1",
        )
        require(
            self.precision in ("auto", "bf16", "fp32"),
            f"{where}.precision",
            f"expected auto, bf16 or fp32, got {self.precision!r}",
        )


@TEACHERS.register("local")
class LocalTeacher(Teacher):
    name = "local"
    Options = LocalTeacherOptions
    options: LocalTeacherOptions
    summary = "any decoder tunebench can load, generating greedily with a prompt template"

    def __init__(self, options: LocalTeacherOptions | None = None) -> None:
        super().__init__(options)
        self._loaded: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._loaded is None:
            resolved = resolve_model(self.options.model)
            if resolved.kind != "decoder":
                raise UnsupportedError(
                    f"teacher 'local' generates text and needs a decoder; {resolved.name} is an encoder"
                )
            device = pick_device()
            tokenizer = load_tokenizer(resolved)
            chat = self.options.chat == "yes" or (
                self.options.chat == "auto" and bool(getattr(tokenizer, "chat_template", None))
            )
            self._loaded = {
                "model": load_causal_lm(resolved, device),
                "tokenizer": tokenizer,
                "device": device,
                "bf16": use_bf16(self.options.precision, device),
                "chat": chat,
            }
        return self._loaded

    def prompts(self, task: Task, inputs: list[str], *, explain: bool) -> list[str]:
        """The exact texts the model continues (chat-wrapped when it is a chat model)."""
        loaded = self._load()
        template = (
            (self.options.explain_template or EXPLAIN_TEMPLATE)
            if explain
            else (self.options.template or ANSWER_TEMPLATE)
        )
        texts = [render(template, task, text) for text in inputs]
        if not loaded["chat"]:
            return texts
        tokenizer = loaded["tokenizer"]
        return [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
            )
            for t in texts
        ]

    def teach(self, task: Task, inputs: list[str], *, explain: bool) -> list[TeacherOutput]:
        loaded = self._load()
        outputs = generate(
            loaded["model"],
            loaded["tokenizer"],
            self.prompts(task, inputs, explain=explain),
            max_new_tokens=self.options.max_new_tokens
            or (EXPLAIN_NEW_TOKENS if explain else task.max_new_tokens),
            batch_size=self.options.batch_size,
            device=loaded["device"],
            bf16=loaded["bf16"],
            # A base model asked for a short answer stops at the end of the line, as few-shot prompting does.
            stop=None if explain or loaded["chat"] else "\n",
            add_special_tokens=not loaded["chat"],  # a chat template writes its own
        )
        return [
            TeacherOutput(
                text=out.strip(),
                answer=read_answer(task, out, explain=explain),
                explanation=out.strip() if explain else None,
            )
            for out in outputs
        ]
