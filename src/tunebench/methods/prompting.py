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

from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context, NoOptions, write_json
from tunebench.methods.remote import EndpointModel
from tunebench.methods.tuning import ModelMethod
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks.base import Example, Task


@dataclass
class FewShotOptions:
    k: int = 8
    """Examples shown before each question, drawn once from the training split with the run seed."""

    def check(self, where: str) -> None:
        require(self.k >= 1, f"{where}.k", f"few-shot needs at least one example, got {self.k}")


class PromptingMethod(ModelMethod):
    access = "black box"
    updates = "nothing"
    generative_only = True
    shots: list[Example]

    #: The model behind an OpenAI-compatible endpoint (`openai:MODEL@URL`), when it is one; else None.
    remote: EndpointModel | None = None

    def check(self, task: Task, model: ResolvedModel) -> None:
        if model.kind != "endpoint":  # an endpoint generates text by definition: no head to choose
            super().check(task, model)

    def prepare(self, ctx: Context) -> None:
        self.shots = self.choose_shots(ctx)
        self.task = ctx.task
        if ctx.model.kind == "endpoint":
            self.remote = EndpointModel(ctx.model)
            self.chat = self.remote.chat
            return
        super().prepare(ctx)
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
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
        if self.remote is not None:  # the endpoint applies its own chat template to these turns
            return json.dumps(self.messages(task, text), ensure_ascii=False)
        return self.tokenizer.apply_chat_template(
            self.messages(task, text), tokenize=False, add_generation_prompt=True
        )

    def predict(self, ctx: Context, inputs: list[str]) -> list[str]:
        if self.remote is not None:
            return self.remote.predict(self, ctx, inputs)
        return super().predict(ctx, inputs)

    def usage(self) -> dict | None:
        return self.remote.usage() if self.remote is not None else None

    def param_counts(self) -> tuple[int, int | None]:
        if self.remote is not None:
            return 0, None  # nothing is trained, and the size of a model behind an API is unknown
        return super().param_counts()

    def text_nll(self, texts: list[str], ctx: Context) -> float | None:
        return None if self.remote is not None else super().text_nll(texts, ctx)

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


@METHODS.register("few-shot")
class FewShot(PromptingMethod):
    name = "few-shot"
    summary = "instruction plus k solved examples from the training split in the prompt; no training"
    Options = FewShotOptions

    def choose_shots(self, ctx: Context) -> list[Example]:
        k = min(self.options.k, len(ctx.splits.train))
        return random.Random(ctx.seed).sample(ctx.splits.train, k)
