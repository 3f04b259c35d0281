"""One battery that every registered method passes on tiny random models (a decoder and an encoder).

For each method and each scenario it can run: prepare, count parameters, fit a few steps with the loss
falling, export, load the artifact into a fresh object and get the same predictions. Where a method
does not fit a task or model it must refuse with a clear reason. A newly registered method is covered
without editing this file.
"""

from __future__ import annotations

import json

import pytest
import torch

from tunebench.core.errors import UnsupportedError
from tunebench.methods import METHODS, Context
from tunebench.methods.heads import ClassifierHead
from tunebench.models import resolve_model
from tunebench.tasks import build_task
from tunebench.train.budget import Budget

# Learning rates high enough that a few steps visibly lower the loss on a tiny model.
FAST_LR = {"full": 3e-3, "partial": 3e-3}
DEFAULT_LR = 1e-2


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    data = tmp_path_factory.mktemp("data") / "sentiment.jsonl"
    # Two classes told apart by their words alone, so even a frozen random trunk gives separable features.
    words = {"pos": ["great", "good", "nice"], "neg": ["awful", "bad", "poor"]}
    rows = [
        {"text": f"{words[label][i % 3]} {words[label][(i // 3) % 3]}", "label": label}
        for i in range(30)
        for label in ("pos", "neg")
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    classification = build_task("file", {"path": str(data), "input": "text", "target": "label"})
    generation = build_task("arithmetic", {"digits": 1, "train_size": 24, "dev_size": 4, "test_size": 8})
    return {
        "decoder-generation": (resolve_model("tiny-llama"), generation),
        "decoder-classification": (resolve_model("tiny-llama"), classification),
        "encoder-classification": (resolve_model("tiny-bert"), classification),
    }


def _context(model, task, method_name):
    budget = Budget(
        steps=16,
        batch_size=8,
        lr=FAST_LR.get(method_name, DEFAULT_LR),
        warmup=0.0,
        max_length=48,
        eval_batch_size=4,
    )
    return Context(
        model=model,
        task=task,
        splits=task.splits(),
        budget=budget,
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )


@pytest.mark.parametrize("method_name", list(METHODS))
@pytest.mark.parametrize(
    "scenario", ["decoder-generation", "decoder-classification", "encoder-classification"]
)
def test_method_conforms(method_name, scenario, scenarios, tmp_path):
    model, task = scenarios[scenario]
    method_cls = METHODS.get(method_name)
    method = method_cls()
    try:
        method.check(task, model)
    except UnsupportedError as e:
        # Refusals are clear: they say what is needed and what was given.
        assert len(str(e)) > 20 and (task.name in str(e) or model.name in str(e) or method_name in str(e))
        pytest.skip(f"refused as expected: {e}")
    ctx = _context(model, task, method_name)
    method.prepare(ctx)

    trainable, total = method.param_counts()
    assert 0 <= trainable <= total
    assert (trainable > 0) == (method_cls.trains or method_name == "probe")

    stats = method.fit(ctx)
    if method_cls.trains:
        losses = stats.losses
        assert len(losses) == 16
        assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, f"{method_name} did not learn: {losses}"

    inputs = [e.input for e in ctx.splits.test]
    before = method.predict(ctx, inputs)
    assert len(before) == len(inputs) and all(isinstance(p, str) for p in before)
    if isinstance(getattr(method, "head", None), ClassifierHead):
        assert set(before) <= set(task.labels)

    artifact = tmp_path / "artifact"
    artifact.mkdir()
    method.export(artifact)
    assert any(artifact.iterdir())

    fresh = method_cls()
    fresh.prepare(ctx)
    fresh.load_artifact(artifact)
    assert fresh.predict(ctx, inputs) == before
    assert fresh.param_counts() == (trainable, total)

    if method_cls.trains:  # early stopping keeps this state and puts it back: it must hold all that trained
        state = method.trainable_state()
        assert state
        restored = method_cls()
        restored.prepare(ctx)
        restored.load_trainable_state(state)
        assert restored.predict(ctx, inputs) == before


def test_every_method_runs_somewhere(scenarios):
    for name in METHODS:
        method = METHODS.get(name)()
        fits = []
        for model, task in scenarios.values():
            try:
                method.check(task, model)
                fits.append(True)
            except UnsupportedError:
                fits.append(False)
        assert any(fits), f"{name} refuses every scenario"
