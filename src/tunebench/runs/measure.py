"""Measurements beyond the test score: dev score, latency per example (unmerged and merged), drift.

All of them ask the method through its contract (`predict`, `merge`, `text_nll`) and never by name.

Drift is a forgetting measure that needs no extra data (after the "capability drift" checks of the
fine-tuning literature): the base model writes a few continuations of neutral prompts once per model;
each run then reports how much less likely the tuned model finds that text, as the increase in mean
per-token negative log-likelihood (nats). Prompting leaves the model as it is (drift 0); a method that
rewrote the model for arithmetic finds ordinary prose less likely (drift > 0).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tunebench.core import store
from tunebench.core.paths import cache_dir
from tunebench.evaluate.generate import generate
from tunebench.methods import Context, Method
from tunebench.models.load import load_causal_lm, load_tokenizer
from tunebench.train.device import autocast

#: Examples timed one at a time for the latency figure, at most; timing stops earlier once
#: LATENCY_BUDGET_S have passed (a chatty zero-shot answer can take seconds on a CPU), after at least one.
LATENCY_EXAMPLES = 5
LATENCY_BUDGET_S = 10.0

#: Neutral prompts, far from any task, whose base-model continuations are the drift probe.
NEUTRAL_PROMPTS = [
    "The history of the old harbour town begins",
    "Here is a short story about a lighthouse keeper.",
    "The best way to learn a new language is",
    "Yesterday I went to the market and",
    "Scientists studying the deep ocean have found",
    "My grandmother's favourite recipe is",
    "The main causes of the French Revolution were",
    "In the early morning, the forest",
]
DRIFT_NEW_TOKENS = 40


def dev_score(method: Method, ctx: Context) -> tuple[str, float]:
    """(primary metric, value) of the method's predictions on the dev split."""
    metric, value, _ = dev_eval(method, ctx)
    return metric, value


def dev_eval(method: Method, ctx: Context) -> tuple[str, float, list[bool]]:
    """(primary metric, value, per-example correctness) of the method's predictions on the dev split."""
    dev = ctx.splits.dev
    quiet = dataclasses.replace(ctx, on_eval_batch=None)
    predictions = method.predict(quiet, [e.input for e in dev])
    scores = ctx.task.score(predictions, [e.target for e in dev])
    return scores.primary, scores.metrics[scores.primary], list(scores.correct)


@contextmanager
def training_modes_kept(method: Method) -> Iterator[None]:
    """Restore every module's train/eval flag after an evaluation in the middle of training.

    `predict` puts the model in eval mode; the training loop set train mode once, before its first step,
    so without this, dropout would be off for the rest of training after the first dev evaluation.
    """
    modules = [m for m in vars(method).values() if isinstance(m, torch.nn.Module)]
    flags = [(sub, sub.training) for m in modules for sub in m.modules()]
    try:
        yield
    finally:
        for sub, training in flags:
            sub.training = training


def latency(method: Method, ctx: Context, inputs: list[str]) -> tuple[float | None, int]:
    """(median milliseconds to answer one example on its own, examples timed), as a served request waits.

    The batched evaluation's seconds per example measure throughput; this measures the wait of a user.
    No warm-up call: the model has just answered the whole test split, so its first-call costs are paid.
    """
    single = dataclasses.replace(
        ctx, budget=dataclasses.replace(ctx.budget, eval_batch_size=1), on_eval_batch=None
    )
    times: list[float] = []
    for x in inputs[:LATENCY_EXAMPLES]:
        start = time.perf_counter()
        method.predict(single, [x])
        times.append(time.perf_counter() - start)
        if sum(times) > LATENCY_BUDGET_S:
            break
    return (1000 * statistics.median(times) if times else None), len(times)


@torch.no_grad()
def mean_nll(model: torch.nn.Module, tokenizer, texts: list[str], ctx: Context) -> float:
    """Mean per-token NLL of `texts`: right padding, padding masked out (as `Method.text_nll` computes it)."""
    model.eval()
    tokenizer.padding_side = "right"
    enc = tokenizer(texts, return_tensors="pt", padding=True).to(ctx.device)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    with autocast(ctx.device, ctx.bf16):
        return float(model(**enc, labels=labels).loss)


def _reference_key(ctx: Context) -> str:
    return f"{ctx.device.type}-{'bf16' if ctx.bf16 else 'fp32'}"


def reference_path(ctx: Context) -> Path:
    """Where the drift reference of this model is cached: beside the models, shared by every experiment."""

    key = hashlib.sha256(str(ctx.model.path).encode()).hexdigest()[:10]
    return cache_dir() / "drift" / f"{ctx.model.name.replace('/', '--')}-{key}.json"


def drift_reference(ctx: Context, path: Path | None = None) -> dict[str, Any]:
    """The base model's texts and their NLL under the base model, made once per model and cached.

    The cache is keyed by the model's path and the prompts; the base NLL also by device and precision,
    because bf16 and fp32 give NLLs that differ by more than a small drift.
    """

    path = path or reference_path(ctx)

    recipe = hashlib.sha256(json.dumps([NEUTRAL_PROMPTS, DRIFT_NEW_TOKENS]).encode()).hexdigest()[:16]
    ref: dict[str, Any] = {}
    if path.exists():
        try:
            ref = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            ref = {}  # damaged cache: make it again
    if ref.get("model_path") != ctx.model.path or ref.get("recipe") != recipe:
        ref = {"model": ctx.model.name, "model_path": ctx.model.path, "recipe": recipe, "base_nll": {}}
    key = _reference_key(ctx)
    if "texts" in ref and key in ref["base_nll"]:
        return {**ref, "path": str(path)}
    tokenizer = load_tokenizer(ctx.model)
    model = load_causal_lm(ctx.model, ctx.device)
    if "texts" not in ref:
        continuations = generate(
            model,
            tokenizer,
            NEUTRAL_PROMPTS,
            max_new_tokens=DRIFT_NEW_TOKENS,
            batch_size=len(NEUTRAL_PROMPTS),
            device=ctx.device,
            bf16=ctx.bf16,
            reuse_prefix=False,
        )
        ref["texts"] = [p + c for p, c in zip(NEUTRAL_PROMPTS, continuations, strict=True)]
    ref["base_nll"][key] = mean_nll(model, tokenizer, ref["texts"], ctx)
    del model
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json_atomic(path, ref)
    return {**ref, "path": str(path)}


def drift(method: Method, ctx: Context, reference: dict[str, Any]) -> dict[str, Any] | None:
    """NLL increase of the base model's own text under the tuned model, or None without a language model."""
    tuned = method.text_nll(reference["texts"], ctx)
    if tuned is None:
        return None
    base = reference["base_nll"][_reference_key(ctx)]
    return {
        "nll_increase": tuned - base,
        "tuned_nll": tuned,
        "base_nll": base,
        "texts": len(reference["texts"]),
        "reference": reference.get("path"),
    }
