"""Prompting: the model is left as it is and told what to do (zero-shot) or shown examples (few-shot).

With a chat model (its tokenizer has a chat template) the instruction and the shots are chat turns, as
its users would write them; with a base model they are plain text, one "question = answer" per line,
and generation stops at the end of the line.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from tunebench.methods.base import METHODS, Context, NoOptions, write_json
from tunebench.methods.tuning import ModelMethod
from tunebench.tasks.base import Example, Task
from tunebench.typed import require


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

    def prepare(self, ctx: Context) -> None:
        super().prepare(ctx)
        self.shots = self.choose_shots(ctx)
        self.task = ctx.task
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.stop = None if self.chat else "\n"
        self.prompt_has_specials = self.chat

    def choose_shots(self, ctx: Context) -> list[Example]:
        return []

    def render(self, task: Task, text: str) -> str:
        if self.chat:
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
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [task.instruction, ""] + [f"{task.prompt(s.input)} {s.target}" for s in self.shots]
        return "\n".join([*lines, task.prompt(text)])

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
