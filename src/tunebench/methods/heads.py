"""How a model answers a task: by generating text, or through a classification head.

A method decides *what is trained* (all weights, low-rank adapters, a prefix...); a head decides *how the
model answers*: a causal LM generates the answer after the task's prompt, or a sequence-classification
model scores the labels from its pooled representation (encoders always; decoders when the spec asks
for `head: classifier`). The two are independent, so every training method works with either head.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import torch

from tunebench.evaluate.generate import generate
from tunebench.models.load import load_causal_lm, load_tokenizer
from tunebench.train.data import Encoded, collate, encode, encode_labelled
from tunebench.train.device import autocast
from tunebench.train.loop import LossFn
from tunebench.train.loss import classification_loss, full_forward_loss, target_loss

if TYPE_CHECKING:
    from tunebench.methods.base import Context
    from tunebench.methods.tuning import ModelMethod


class Head(ABC):
    name: str
    peft_task_type: str
    """PEFT's name for the model kind this head builds."""

    @abstractmethod
    def load(self, ctx: Context, **load_kwargs: Any) -> tuple[torch.nn.Module, Any, list[str]]:
        """(model, tokenizer, names of modules created for the task, which always train)."""

    @abstractmethod
    def encode(self, method: ModelMethod, ctx: Context) -> tuple[list[Encoded], int]: ...

    @abstractmethod
    def loss_fn(self, method: ModelMethod) -> LossFn: ...

    @abstractmethod
    def predict(self, method: ModelMethod, ctx: Context, inputs: list[str]) -> list[str]: ...


class GenerativeHead(Head):
    name = "generate"
    peft_task_type = "CAUSAL_LM"

    def load(self, ctx: Context, **load_kwargs: Any) -> tuple[torch.nn.Module, Any, list[str]]:
        return load_causal_lm(ctx.model, ctx.device, **load_kwargs), load_tokenizer(ctx.model), []

    def encode(self, method: ModelMethod, ctx: Context) -> tuple[list[Encoded], int]:
        split = ctx.splits.train
        prompts = [method.render(ctx.task, e.input) for e in split]
        return encode(method.tokenizer, prompts, [e.target for e in split], ctx.budget.max_length)

    def loss_fn(self, method: ModelMethod) -> LossFn:
        # Wrappers that change the forward itself (virtual tokens) need the model's own forward.
        return full_forward_loss if method.full_forward else target_loss

    def predict(self, method: ModelMethod, ctx: Context, inputs: list[str]) -> list[str]:
        return generate(
            method.model,
            method.tokenizer,
            [method.render(ctx.task, x) for x in inputs],
            max_new_tokens=method.max_new_tokens(ctx.task),
            batch_size=ctx.budget.eval_batch_size,
            device=ctx.device,
            bf16=ctx.bf16,
            stop=method.stop,
            add_special_tokens=not method.prompt_has_specials,
            reuse_prefix=method.shares_kv_cache,
            on_batch=ctx.on_eval_batch,
        )


class ClassifierHead(Head):
    name = "classifier"
    peft_task_type = "SEQ_CLS"

    def load(self, ctx: Context, **load_kwargs: Any) -> tuple[torch.nn.Module, Any, list[str]]:
        from transformers import AutoModelForSequenceClassification

        labels = ctx.task.labels or []
        tokenizer = load_tokenizer(ctx.model)
        tokenizer.padding_side = "right"
        model, info = AutoModelForSequenceClassification.from_pretrained(
            ctx.model.path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            pad_token_id=tokenizer.pad_token_id,
            output_loading_info=True,
            **{"dtype": torch.float32, **load_kwargs},
        )
        # Weights missing from the checkpoint are the new classification layer: it always trains.
        new_modules = sorted({key.rsplit(".", 1)[0] for key in info["missing_keys"]})
        return model.to(ctx.device).eval(), tokenizer, new_modules

    def encode(self, method: ModelMethod, ctx: Context) -> tuple[list[Encoded], int]:
        index = {label: i for i, label in enumerate(ctx.task.labels or [])}
        split = ctx.splits.train
        return encode_labelled(
            method.tokenizer,
            [e.input for e in split],
            [index[e.target] for e in split],
            ctx.budget.max_length,
        )

    def loss_fn(self, method: ModelMethod) -> LossFn:
        return classification_loss

    @torch.no_grad()
    def predict(self, method: ModelMethod, ctx: Context, inputs: list[str]) -> list[str]:
        labels = ctx.task.labels or []
        encoded, _ = encode_labelled(method.tokenizer, inputs, [0] * len(inputs), ctx.budget.max_length)
        order = sorted(range(len(inputs)), key=lambda i: len(encoded[i].ids))
        out = [""] * len(inputs)
        method.model.eval()
        for start in range(0, len(order), ctx.budget.eval_batch_size):
            idx = order[start : start + ctx.budget.eval_batch_size]
            batch = collate([encoded[i] for i in idx], method.tokenizer.pad_token_id).to(ctx.device)
            with autocast(ctx.device, ctx.bf16):
                logits = method.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            for i, k in zip(idx, logits.argmax(-1).tolist(), strict=True):
                out[i] = labels[k]
            if ctx.on_eval_batch is not None:
                ctx.on_eval_batch(len(idx))
        return out
