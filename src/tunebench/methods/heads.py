"""How a model answers a task: by generating text, or through a classification head.

A method decides *what is trained* (all weights, low-rank adapters, a prefix...); a head decides *how the
model answers*: a causal LM generates the answer after the task's prompt, or a classifier reads the
trunk's pooled representation through one linear layer (encoders always; decoders when the spec asks
for `head: classifier`). The two are independent, so every training method works with either head.

The classifier is tunebench's own, not transformers' `*ForSequenceClassification`: BERT's head there
reads a tanh pooler layer over [CLS] that a sentence encoder such as all-MiniLM-L6-v2 never trained,
while the probe reads the model's own pooling. Here the probe and the head read the same pooled vector
(methods/pooling.py), and the head is one Linear layer, so LP-FT can start it from the probe's solution.
"""

from __future__ import annotations

import contextlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from tunebench.evaluate.generate import generate
from tunebench.methods.pooling import (
    Pooling,
    feature_cache,
    load_trunk,
    model_pooling,
    pooled_features,
    trunk_pooled,
)
from tunebench.methods.probe import ProbeOptions, linear_init, logistic
from tunebench.models.load import load_causal_lm, load_tokenizer
from tunebench.train.data import Encoded, collate, encode, encode_labelled
from tunebench.train.device import autocast
from tunebench.train.loop import LossFn
from tunebench.train.loss import classification_loss, full_forward_loss, target_loss

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from tunebench.methods.base import Context
    from tunebench.methods.tuning import ModelMethod

#: The new layer's name: PEFT keeps a module of this name trainable for sequence classification by itself.
HEAD_MODULE = "classifier"


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


class SequenceClassifier(nn.Module):
    """A pretrained trunk read through the model's own pooling, then dropout and one Linear layer to the
    labels: (B, T) tokens → (B, C) logits, returned as transformers' `SequenceClassifierOutput`.

    The trunk sits under its own prefix (`bert`, `model`...), so the weights are named as transformers
    names them: `AutoModel.from_pretrained` reads the trunk of an exported model, and the head is
    `classifier.weight` / `classifier.bias`. The forward takes what PEFT's sequence-classification wrapper
    passes (prompt tuning's `inputs_embeds`, prefix tuning's `past_key_values`) and ignores output flags.
    """

    #: Attributes PEFT reads from the model it wraps (a 4-bit base, say), taken over from the trunk.
    FROM_TRUNK = (
        "is_loaded_in_4bit",
        "is_loaded_in_8bit",
        "is_quantized",
        "quantization_method",
        "hf_device_map",
    )

    def __init__(self, trunk: PreTrainedModel, pooling: str, num_labels: int) -> None:
        super().__init__()
        self.base_model_prefix = getattr(trunk, "base_model_prefix", "") or "model"
        self.add_module(self.base_model_prefix, trunk)
        self.config = trunk.config
        self.pooling = pooling
        # As transformers' heads do: the config's classifier dropout, else its hidden dropout (none for Llama).
        p = getattr(self.config, "classifier_dropout", None)
        self.dropout = nn.Dropout(p if p is not None else getattr(self.config, "hidden_dropout_prob", 0.0))
        device = next(trunk.parameters()).device
        # fp32 even over a bf16 (QLoRA) trunk: the head trains, and its weights are a probe's solution.
        self.classifier = nn.Linear(  # HEAD_MODULE
            self.config.hidden_size, num_labels, device=device, dtype=torch.float32
        )
        nn.init.normal_(self.classifier.weight, std=getattr(self.config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)
        for name in self.FROM_TRUNK:
            if hasattr(trunk, name):
                setattr(self, name, getattr(trunk, name))

    @property
    def trunk(self) -> PreTrainedModel:
        return getattr(self, self.base_model_prefix)

    @property
    def device(self) -> torch.device:
        return self.trunk.device

    @property
    def dtype(self) -> torch.dtype:
        return self.trunk.dtype

    def get_input_embeddings(self) -> nn.Module:
        return self.trunk.get_input_embeddings()

    def get_output_embeddings(self) -> None:
        return None  # no LM head: the classification layer is new and always trains

    def pooled(self, input_ids=None, attention_mask=None, **trunk_kwargs: Any) -> torch.Tensor:
        """(B, H): the trunk's last hidden states pooled the model's own way (the probe's features)."""
        return trunk_pooled(self.trunk, self.pooling, input_ids, attention_mask, **trunk_kwargs)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        past_key_values=None,
        token_type_ids=None,
        labels=None,
        **flags: Any,
    ):
        from transformers.modeling_outputs import SequenceClassifierOutput  # lazy: slow import

        pooled = self.pooled(
            input_ids,
            attention_mask,
            inputs_embeds=inputs_embeds,
            past_key_values=past_key_values,
            token_type_ids=token_type_ids,
        )
        logits = self.classifier(self.dropout(pooled).float())  # (B, C)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def set_head(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Put (C, H) and (C,) into the classification layer, and into PEFT's trainable copy of it."""
        for layer in self.classifier.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(weight)
                layer.bias.copy_(bias)

    def save_pretrained(self, folder: str | Path) -> None:
        """config.json (the trunk's, with the labels), model.safetensors (every weight by transformers'
        names) and classifier.json (how the head reads the trunk)."""

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(folder)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        head = {
            "pooling": self.pooling,
            "num_labels": self.classifier.out_features,
            "dropout": self.dropout.p,
        }
        (folder / "classifier.json").write_text(json.dumps(head, indent=2))


@contextlib.contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) for a pass that training follows.

    bitsandbytes' 4-bit layers repack their weights for CPU inference on their first eval-mode forward and
    keep that layout, which training then fails on ("a view of a leaf Variable that requires grad is used
    in an in-place operation", bitsandbytes 0.50 on AVX512-BF16 CPUs): they stay in training mode, which
    changes nothing else in them.
    """
    model.eval()
    for module in model.modules():
        if type(module).__name__ == "Linear4bit":
            module.train()
    try:
        yield
    finally:
        model.eval()


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a PEFT wrapper (or the model itself)."""
    wrapper: Any = model  # PEFT's API (get_base_model), which torch.nn.Module does not declare
    return wrapper.get_base_model() if hasattr(wrapper, "get_base_model") else model


class ClassifierHead(Head):
    name = "classifier"
    peft_task_type = "SEQ_CLS"

    def load(self, ctx: Context, **load_kwargs: Any) -> tuple[torch.nn.Module, Any, list[str]]:
        labels = ctx.task.labels or []
        tokenizer = load_tokenizer(ctx.model)
        tokenizer.padding_side = "right"
        trunk = load_trunk(ctx.model, ctx.device, **load_kwargs)
        trunk.config.id2label = dict(enumerate(labels))  # written into an exported config.json
        trunk.config.label2id = {label: i for i, label in enumerate(labels)}
        self.pooling: Pooling = model_pooling(ctx.model)
        model = SequenceClassifier(trunk, self.pooling.mode, len(labels))
        return model.eval(), tokenizer, [HEAD_MODULE]

    def init_from_probe(self, method: ModelMethod, ctx: Context) -> dict[str, Any]:
        """LP-FT's first step (Kumar et al., 2022): a logistic-regression probe on the training split's
        frozen pooled features, its solution copied into the head. The features are the probe method's
        (same pooling, same cache), read through the trunk as prepared: adapters start as the identity,
        and virtual tokens are left out. Returns what the run records about it."""

        inner = cast(SequenceClassifier, unwrap(method.model))  # what `load` built, under PEFT's wrapper
        labels = list(ctx.task.labels or [])
        index = {label: i for i, label in enumerate(labels)}
        texts = [e.input for e in ctx.splits.train]
        y = [index[e.target] for e in ctx.splits.train]
        cache = feature_cache(ctx.model, inner.trunk, inner.pooling, ctx, texts)
        cached = cache.exists()
        start = time.perf_counter()
        with _inference(method.model):
            x = pooled_features(inner.pooled, method.tokenizer, texts, ctx, cache)
        probe = logistic(ProbeOptions()).fit(x, y)
        weight, bias = linear_init(probe, len(labels))
        inner.set_head(torch.from_numpy(weight), torch.from_numpy(bias))
        return {
            "init": "probe",
            "probe_train_accuracy": float(probe.score(x, y)),
            "probe_seconds": time.perf_counter() - start,
            "probe_features_cached": cached,
        }

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
