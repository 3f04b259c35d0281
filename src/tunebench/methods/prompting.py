"""Prompting: the model is left as it is and told what to do (zero-shot) or shown examples (few-shot).

With a chat model (its tokenizer has a chat template) the instruction and the shots are chat turns, as
its users would write them; with a base model they are plain text, one "question = answer" per line,
and generation stops at the end of the line. A model behind an OpenAI-compatible endpoint
(`openai:MODEL@URL`) gets the same turns through the chat API, or the same text through the completions
API (methods/remote.py).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context, NoOptions, write_json
from tunebench.methods.cost import Cost, zero
from tunebench.methods.remote import EndpointBackend
from tunebench.methods.tuning import ModelMethod
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks.base import Example, Task


@dataclass
class FewShotOptions:
    k: int = 8
    """Examples shown before each question, drawn once from the training split with the run seed."""

    def check(self, where: str) -> None:
        require(self.k >= 1, f"{where}.k", f"few-shot needs at least one example, got {self.k}")


class PromptBackend(Protocol):
    """Where a prompted model answers: loaded here (`LocalBackend`) or behind an OpenAI-compatible endpoint
    (`EndpointBackend`, remote.py). The prompting method builds its prompts the same way for both; only
    these steps differ."""

    def check(self, method: PromptingMethod, task: Task, model: ResolvedModel) -> None: ...

    def prepare(self, method: PromptingMethod, ctx: Context) -> bool:
        """Get the model ready; True when it takes chat turns (a chat template, or the chat API)."""
        ...

    def chat_text(self, method: PromptingMethod, messages: list[dict[str, str]]) -> str:
        """Chat turns as the model receives them (the exported prompt shows this text)."""
        ...

    def predict(self, method: PromptingMethod, ctx: Context, inputs: list[str]) -> list[str]: ...

    def usage(self) -> dict[str, Any] | None: ...

    def param_counts(self, method: PromptingMethod) -> tuple[int, int | None]: ...

    def text_nll(self, method: PromptingMethod, texts: list[str], ctx: Context) -> float | None: ...


class LocalBackend:
    """The model loaded here, through ModelMethod's own machinery: its head, generation and counts."""

    def check(self, method: PromptingMethod, task: Task, model: ResolvedModel) -> None:
        ModelMethod.check(method, task, model)

    def prepare(self, method: PromptingMethod, ctx: Context) -> bool:
        ModelMethod.prepare(method, ctx)
        return bool(getattr(method.tokenizer, "chat_template", None))

    def chat_text(self, method: PromptingMethod, messages: list[dict[str, str]]) -> str:
        return method.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def predict(self, method: PromptingMethod, ctx: Context, inputs: list[str]) -> list[str]:
        return ModelMethod.predict(method, ctx, inputs)

    def usage(self) -> dict[str, Any] | None:
        return None  # its costs are parameters, memory and time, measured by the run

    def param_counts(self, method: PromptingMethod) -> tuple[int, int | None]:
        return ModelMethod.param_counts(method)

    def text_nll(self, method: PromptingMethod, texts: list[str], ctx: Context) -> float | None:
        return ModelMethod.text_nll(method, texts, ctx)


def backend_for(model: ResolvedModel) -> PromptBackend:
    """The one place that tells a model behind an endpoint (`openai:MODEL@URL`) from one loaded here."""
    return EndpointBackend(model) if model.kind == "endpoint" else LocalBackend()


class PromptingMethod(ModelMethod):
    access = "black box"
    updates = "nothing"
    generative_only = True
    shots: list[Example]
    backend: PromptBackend

    def check(self, task: Task, model: ResolvedModel) -> None:
        backend_for(model).check(self, task, model)

    def prepare(self, ctx: Context) -> None:
        self.shots = self.choose_shots(ctx)
        self.task = ctx.task
        self.backend = backend_for(ctx.model)
        self.chat = self.backend.prepare(self, ctx)
        self.stop = None if self.chat else "\n"
        self.prompt_has_specials = self.chat

    def choose_shots(self, ctx: Context) -> list[Example]:
        return []

    def messages(self, task: Task, text: str) -> list[dict[str, str]]:
        """The instruction, the shots and the question as chat turns."""
        messages = []
        for i, shot in enumerate(self.shots):
            content = task.prompt(shot.input)
            messages += [
                {"role": "user", "content": f"{task.instruction}\n\n{content}" if i == 0 else content},
                {"role": "assistant", "content": shot.target},
            ]
        question = task.prompt(text)
        messages.append(
            {"role": "user", "content": question if self.shots else f"{task.instruction}\n\n{question}"}
        )
        return messages

    def plain(self, task: Task, text: str) -> str:
        """The instruction, then one "question = answer" line per shot, then the question."""
        lines = [task.instruction, ""] + [f"{task.prompt(s.input)} {s.target}" for s in self.shots]
        return "\n".join([*lines, task.prompt(text)])

    def render(self, task: Task, text: str) -> str:
        if not self.chat:
            return self.plain(task, text)
        return self.backend.chat_text(self, self.messages(task, text))

    def predict(self, ctx: Context, inputs: list[str]) -> list[str]:
        return self.backend.predict(self, ctx, inputs)

    def usage(self) -> dict | None:
        return self.backend.usage()

    def param_counts(self) -> tuple[int, int | None]:
        return self.backend.param_counts(self)

    def text_nll(self, texts: list[str], ctx: Context) -> float | None:
        return self.backend.text_nll(self, texts, ctx)

    def max_new_tokens(self, task: Task) -> int:
        return max(32, 2 * task.max_new_tokens)  # room for a chatty "The answer is ..."

    def export(self, folder: Path) -> None:
        write_json(
            folder / "prompt.json",
            {
                "format": "chat" if self.chat else "plain",
                "instruction": self.task.instruction,
                "shots": [{"input": s.input, "target": s.target} for s in self.shots],
                # the exact text the model saw, {input} standing for the question: usable without tunebench
                "rendered": self.render(self.task, "{input}"),
            },
        )

    def load_artifact(self, folder: Path) -> None:
        data = json.loads((folder / "prompt.json").read_text(encoding="utf-8"))
        self.shots = [Example(s["input"], s["target"]) for s in data["shots"]]


@METHODS.register("zero-shot")
class ZeroShot(PromptingMethod):
    name = "zero-shot"
    Options = NoOptions
    summary = "describe the task in an instruction; no examples, no training"
    cost = Cost(
        "inference only: the weights, a KV cache and one block's working set",
        generates=True,
        backprop_layers=zero,
    )


@METHODS.register("few-shot")
class FewShot(PromptingMethod):
    name = "few-shot"
    summary = "instruction plus k solved examples from the training split in the prompt; no training"
    Options = FewShotOptions
    cost = Cost(
        "inference only; set --seq-len to the prompt with its shots", generates=True, backprop_layers=zero
    )

    def choose_shots(self, ctx: Context) -> list[Example]:
        k = min(self.options.k, len(ctx.splits.train))
        return random.Random(ctx.seed).sample(ctx.splits.train, k)
