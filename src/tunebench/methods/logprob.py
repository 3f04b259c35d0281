"""Gray-box classification: pick the label whose verbalization the model finds most likely.

No generation and no training: for each input the prompt (zero- or few-shot) runs once, its key/value
cache is copied for every label, and the label tokens are scored in one batch. The score of a label is
the sum of its tokens' log-probabilities (`normalize: true` divides by the token count, which favours
long labels less).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch

from tunebench.core.errors import UnsupportedError
from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context
from tunebench.methods.cost import Cost, zero
from tunebench.methods.prompting import PromptingMethod
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks.base import Example, Task
from tunebench.train.device import autocast


@dataclass
class LogprobOptions:
    k: int = 0
    """Solved examples shown before each input (0: zero-shot)."""
    normalize: bool = False
    """Average the log-probability over the label's tokens instead of summing."""

    def check(self, where: str) -> None:
        require(self.k >= 0, f"{where}.k", "must be 0 or more")


@METHODS.register("logprob")
class LogProb(PromptingMethod):
    name = "logprob"
    access = "gray box"
    summary = "score every label's log-probability after the prompt and pick the best; no generation"
    Options = LogprobOptions
    cost = Cost("inference only: one forward pass scoring each label's log-probability", backprop_layers=zero)

    def check(self, task: Task, model: ResolvedModel) -> None:
        super().check(task, model)
        if task.kind != "classification":
            raise UnsupportedError(
                f"logprob chooses among labels and needs a classification task; {task.name} "
                f"is a {task.kind} task"
            )

    def choose_shots(self, ctx: Context) -> list[Example]:
        k = min(self.options.k, len(ctx.splits.train))
        return random.Random(ctx.seed).sample(ctx.splits.train, k)

    @torch.no_grad()
    def predict(self, ctx: Context, inputs: list[str]) -> list[str]:
        labels = list(ctx.task.labels or [])
        # In chat format the answer starts the assistant turn; in plain text it follows a space.
        label_ids = self.tokenizer(
            [lab if self.chat else " " + lab for lab in labels], add_special_tokens=False
        )
        label_ids = label_ids["input_ids"]
        width = max(len(x) for x in label_ids)
        pad = self.tokenizer.pad_token_id
        tokens = torch.tensor([x + [pad] * (width - len(x)) for x in label_ids], device=ctx.device)  # (L, W)
        valid = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in label_ids], device=ctx.device)
        out = []
        for text in inputs:
            prompt = self.tokenizer(
                self.render(ctx.task, text),
                add_special_tokens=not self.prompt_has_specials,
                return_tensors="pt",
            )["input_ids"].to(ctx.device)  # (1, P)
            with autocast(ctx.device, ctx.bf16):
                first = self.model(input_ids=prompt, use_cache=True)
                cache = copy.deepcopy(first.past_key_values)
                cache.batch_repeat_interleave(len(labels))
                mask = torch.cat(
                    [torch.ones(len(labels), prompt.shape[1], device=ctx.device, dtype=valid.dtype), valid],
                    dim=1,
                )
                rest = self.model(input_ids=tokens, attention_mask=mask, past_key_values=cache)
            # log p(token j | prompt, label tokens < j): the prompt's last logits predict token 0.
            logits = torch.cat([first.logits[:, -1:].expand(len(labels), -1, -1), rest.logits[:, :-1]], dim=1)
            logp = (
                torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            )  # (L, W)
            score = (logp * valid).sum(1)
            if self.options.normalize:
                score = score / valid.sum(1)
            out.append(labels[int(score.argmax())])
            if ctx.on_eval_batch is not None:
                ctx.on_eval_batch(1)
        return out
