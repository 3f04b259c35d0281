"""The method contract: prepare → fit → predict → export, met by prompting and training alike.

Shared code (the runner, the report) never asks a method's name; it asks what the method declares:
whether it trains, what it updates, what access it needs, and whether it fits a task and model.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from tunebench.config import Budget
from tunebench.errors import UnsupportedError
from tunebench.evaluate.generate import generate
from tunebench.models.load import load_causal_lm, load_tokenizer
from tunebench.models.zoo import ResolvedModel
from tunebench.registry import Registry
from tunebench.tasks.base import Splits, Task
from tunebench.train.data import encode
from tunebench.train.device import autocast
from tunebench.train.loop import LossFn, TrainStats, train
from tunebench.train.loss import target_loss


@dataclass
class NoOptions:
    """This method has no options of its own."""


@dataclass
class Context:
    """Everything a method needs for one run."""

    model: ResolvedModel
    task: Task
    splits: Splits
    budget: Budget
    seed: int
    device: torch.device
    bf16: bool
    on_train_step: Callable[[int, int, float], None] | None = None
    on_eval_batch: Callable[[int], None] | None = None


class Method(ABC):
    name: ClassVar[str]
    updates: ClassVar[str]
    """What the method changes, in words ('nothing', 'all weights', 'low-rank adapters')."""
    access: ClassVar[str]
    """black box (text in, text out), gray box (log-probs) or white box (weights)."""
    summary: ClassVar[str]
    trains: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()
        self.train_stats: TrainStats | None = None
        self.truncated = 0

    def check(self, task: Task, model: ResolvedModel) -> None:
        """Raise UnsupportedError when this method cannot run on this task and model."""

    @abstractmethod
    def prepare(self, ctx: Context) -> None: ...

    def fit(self, ctx: Context) -> TrainStats | None:
        return None

    @abstractmethod
    def predict(self, ctx: Context, inputs: list[str]) -> list[str]: ...

    @abstractmethod
    def export(self, folder: Path) -> None:
        """Write the artifact that reproduces this method's predictions on top of the base model."""

    @abstractmethod
    def param_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters, exact."""

    # Optional capabilities, asked for by shared code (latency, drift) instead of testing method names.

    def merge(self) -> bool:
        """Fold trained weights into the base for serving (LoRA family); False when there is nothing to merge."""
        return False

    def text_nll(self, texts: list[str], ctx: Context) -> float | None:
        """Mean per-token negative log-likelihood of `texts` under this method's model, or None when the method
        has no language model to ask (a probe, for example)."""
        return None


METHODS: Registry[type[Method]] = Registry("method")


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total); tied weights (shared embedding and head) count once."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


class DecoderMethod(Method):
    """A method that answers by generating text from a causal LM.

    Subclasses change what is trained (`adapt`), how a question is put (`render`), and what is saved
    (`export`); loading, training and batched generation are shared.
    """

    loss_fn: ClassVar[LossFn] = staticmethod(target_loss)

    def check(self, task: Task, model: ResolvedModel) -> None:
        if model.kind != "decoder":
            raise UnsupportedError(
                f"{self.name} generates text and needs a decoder; {model.name} is an {model.kind}"
            )

    def prepare(self, ctx: Context) -> None:
        self.tokenizer = load_tokenizer(ctx.model)
        base = load_causal_lm(ctx.model, ctx.device)
        for p in base.parameters():
            p.requires_grad_(False)
        torch.manual_seed(ctx.seed)  # adapter initialisation is part of the run's seed
        self.model = self.adapt(base, ctx)

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        """Make the parts this method trains trainable (or wrap the model); the default trains nothing."""
        return model

    def render(self, task: Task, text: str) -> str:
        """The exact text given to the model before its answer."""
        return task.prompt(text)

    def fit(self, ctx: Context) -> TrainStats | None:
        if not self.trains:
            return None
        train_split = ctx.splits.train
        prompts = [self.render(ctx.task, e.input) for e in train_split]
        examples, self.truncated = encode(
            self.tokenizer, prompts, [e.target for e in train_split], ctx.budget.max_length
        )
        self.train_stats = train(
            self.model,
            type(self).loss_fn,
            examples,
            ctx.budget,
            seed=ctx.seed,
            pad_id=self.tokenizer.pad_token_id,
            device=ctx.device,
            bf16=ctx.bf16,
            on_step=ctx.on_train_step,
        )
        return self.train_stats

    #: Stop string for generation besides end-of-sequence (None: only EOS ends an answer).
    stop: str | None = None
    #: Rendered prompts already carry their special tokens (chat templates do).
    prompt_has_specials = False

    def max_new_tokens(self, task: Task) -> int:
        return task.max_new_tokens

    def predict(self, ctx: Context, inputs: list[str]) -> list[str]:
        return generate(
            self.model,
            self.tokenizer,
            [self.render(ctx.task, x) for x in inputs],
            max_new_tokens=self.max_new_tokens(ctx.task),
            batch_size=ctx.budget.eval_batch_size,
            device=ctx.device,
            bf16=ctx.bf16,
            stop=self.stop,
            add_special_tokens=not self.prompt_has_specials,
            on_batch=ctx.on_eval_batch,
        )

    def param_counts(self) -> tuple[int, int]:
        return count_parameters(self.model)

    @torch.no_grad()
    def text_nll(self, texts: list[str], ctx: Context) -> float | None:
        self.model.eval()
        enc = self.tokenizer(texts, return_tensors="pt", padding=True).to(ctx.device)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        with autocast(ctx.device, ctx.bf16):
            return float(self.model(**enc, labels=labels).loss)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
