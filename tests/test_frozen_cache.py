"""Frozen lower blocks computed once (train/frozen.py): with dropout out of the picture, training from the
cached states is the same training as running the whole model, and the cache is used only where it is exact."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from word_data import write_word_sentiment

from tunebench.methods import METHODS, Context
from tunebench.models import resolve_model
from tunebench.models.blocks import transformer_blocks
from tunebench.tasks import build_task
from tunebench.train.budget import Budget


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    data = write_word_sentiment(
        tmp_path_factory.mktemp("data") / "sentiment.jsonl", per_label=24, template="{a} movie, {b} plot"
    )
    return {
        "classification": build_task("file", {"path": str(data), "input": "text", "target": "label"}),
        "generation": build_task(
            "arithmetic", {"digits": 1, "train_size": 24, "dev_size": 4, "test_size": 8}
        ),
    }


def _trained(model_name, task, method_name, options, *, cache, no_dropout=True, steps=6):
    method = METHODS.get(method_name)(METHODS.get(method_name).Options(**options))
    budget = Budget(steps=steps, batch_size=8, lr=3e-3, warmup=0.0, max_length=48, cache_frozen=cache)
    ctx = Context(
        model=resolve_model(model_name),
        task=task,
        splits=task.splits(),
        budget=budget,
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )
    method.prepare(ctx)
    if no_dropout:  # the one intended difference between the two paths; out of the way to compare them
        for m in method.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    stats = method.fit(ctx)
    return method, stats, ctx


@pytest.mark.parametrize(
    ("model_name", "task_name", "options"),
    [
        ("tiny-bert", "classification", {"blocks": 1}),
        ("tiny-llama", "classification", {"blocks": 1, "head": "classifier"}),
        ("tiny-llama", "generation", {"blocks": 1, "output_head": False}),
    ],
)
def test_cached_training_equals_running_the_frozen_blocks(model_name, task_name, options, tasks, tmp_path):
    task = tasks[task_name]
    plain, plain_stats, _ = _trained(model_name, task, "partial", options, cache=False)
    cached, cached_stats, ctx = _trained(model_name, task, "partial", options, cache=True)
    assert plain_stats.frozen_cache is None
    assert cached_stats.frozen_cache is not None and cached_stats.frozen_cache["cached_blocks"] == 1
    assert cached_stats.losses == pytest.approx(plain_stats.losses, rel=1e-4, abs=1e-5)
    assert plain_stats.losses[-1] < plain_stats.losses[0]
    a, b = plain.trainable_state(), cached.trainable_state()
    assert a.keys() == b.keys()
    # The states are the same numbers (the first step's loss is bitwise equal); later steps differ by float
    # rounding (other batch shapes when they were computed), which Adam's normalised update can lift to
    # ~1e-4 on parameters whose gradient is near zero: far below the 6 steps × lr 3e-3 they moved.
    assert cached_stats.losses[0] == plain_stats.losses[0]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-3)
    # After training the model is whole again: its real blocks are back, and it answers as the plain one.
    assert all(type(b).__name__ != "_PassThrough" for b in transformer_blocks(cached.model))
    inputs = [e.input for e in ctx.splits.test]
    assert cached.predict(ctx, inputs) == plain.predict(ctx, inputs)


def test_the_cache_is_read_back_by_the_next_run(tasks):
    task = tasks["classification"]
    _, first, _ = _trained("tiny-bert", task, "partial", {"blocks": 1}, cache=True, steps=2)
    _, second, _ = _trained("tiny-bert", task, "partial", {"blocks": 1}, cache=True, steps=2)
    assert second.frozen_cache["from_disk"] is True
    assert second.losses == first.losses


@pytest.mark.parametrize(
    ("model_name", "task_name", "method_name", "options", "why"),
    [
        ("tiny-bert", "classification", "full", {}, "block 0 trains"),
        ("tiny-bert", "classification", "lora", {}, "every block has adapters"),
        ("tiny-bert", "classification", "partial", {"blocks": 2}, "all blocks train"),
        # tied embeddings: training the output head trains the input embedding below the blocks
        ("tiny-llama", "generation", "partial", {"blocks": 1}, "the tied embedding trains"),
        ("tiny-llama", "generation", "prompt", {}, "the soft prompt sits below the blocks"),
    ],
)
def test_no_cache_where_something_below_trains(model_name, task_name, method_name, options, why, tasks):
    _, stats, _ = _trained(model_name, tasks[task_name], method_name, options, cache=True, steps=1)
    assert stats.frozen_cache is None, why


def test_dropout_is_the_one_difference(tasks):
    """With dropout on, the uncached path perturbs the frozen blocks' outputs and the cached one does not:
    the two losses then differ, which is why `cache_frozen: false` exists."""
    task = tasks["classification"]
    _, plain, _ = _trained(
        "tiny-bert", task, "partial", {"blocks": 1}, cache=False, no_dropout=False, steps=2
    )
    _, cached, _ = _trained(
        "tiny-bert", task, "partial", {"blocks": 1}, cache=True, no_dropout=False, steps=2
    )
    assert cached.losses != pytest.approx(plain.losses, rel=1e-6)
    assert dataclasses.asdict(cached)["frozen_cache"]["cached_blocks"] == 1
