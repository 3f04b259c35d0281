"""One battery that every registered method passes on tiny random models (a decoder and an encoder).

For each method and each scenario it can run: prepare, count parameters, fit a few steps with the loss
falling, export, load the artifact into a fresh object and get the same predictions. Where a method
does not fit a task or model it must refuse with a clear reason. A newly registered method is covered
without editing this file.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from word_data import write_word_sentiment

from tunebench.core.errors import UnsupportedError
from tunebench.methods import METHODS, Context
from tunebench.methods.heads import ClassifierHead
from tunebench.models import resolve_model
from tunebench.objectives import OBJECTIVES, build_method, option_groups, split_name
from tunebench.objectives.compose import trainable_by_objective
from tunebench.tasks import build_task
from tunebench.train.budget import Budget

# Learning rates high enough that a few steps visibly lower the loss on a tiny model (VeRA moves only two
# vectors a layer around random projections: on the random tiny-bert, 16 steps at 1e-2 were lost in noise).
FAST_LR = {"full": 3e-3, "partial": 3e-3, "vera": 1e-1}
DEFAULT_LR = 1e-2


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    data = write_word_sentiment(tmp_path_factory.mktemp("data") / "sentiment.jsonl")
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
        # Random batches: in this data an example's length tells its label (tiny-bert spells "awful" in 5
        # tokens, "great" in 3), so length-grouped batches would be one label each and the 16-step loss
        # curve, which the test reads, would follow the batches' labels rather than the learning.
        group_by_length=False,
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
    method.save(artifact)
    assert any(artifact.iterdir())

    fresh = method_cls()
    fresh.prepare(ctx)
    fresh.restore(artifact)
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


# -- <method>+<objective>: every trainable method held by every objective ----------------------------------

COMPOSITIONS = [
    f"{method}+{objective}"
    for method, cls in METHODS.items()
    if trainable_by_objective(cls)
    for objective in OBJECTIVES
]
#: Small enough that each objective's phases run in seconds on tiny-llama: a few pairs, two DPO or GRPO steps.
OBJECTIVE_OPTIONS = {"dpo": {"max_pairs": 4, "samples": 2}, "rl": {"generations": 2}}


def test_every_trainable_method_composes_with_every_objective():
    assert {"full+dpo", "lora+distill:orca", "prefix+rl"} <= set(COMPOSITIONS)
    assert not any(n.startswith(("probe+", "zero-shot+", "few-shot+")) for n in COMPOSITIONS)
    for name in COMPOSITIONS:
        method_keys, objective_keys = option_groups(name)
        # a spec entry holds both option sets side by side, so a name in both would be ambiguous
        assert not set(method_keys) & set(objective_keys), name


@pytest.mark.parametrize("name", COMPOSITIONS)
def test_composed_method_conforms(name, scenarios, tmp_path):
    """Prepared, trained by its objective, exported and reloaded: the same answers, the objective recorded."""
    model, task = scenarios["decoder-generation"]
    base, objective = split_name(name)
    objective_options = OBJECTIVES.get(objective).Options(**OBJECTIVE_OPTIONS.get(objective, {}))
    method = build_method(name, None, objective_options)
    assert type(method) is METHODS.get(base) and method.objective.name == objective
    try:
        method.check(task, model)
    except UnsupportedError as e:
        assert base in str(e) or objective in str(e) or model.name in str(e)
        pytest.skip(f"refused as expected: {e}")
    ctx = dataclasses.replace(
        _context(model, task, base),
        budget=Budget(steps=2, batch_size=4, lr=1e-3, max_length=48, eval_batch_size=4),
    )
    ctx.folder = tmp_path
    method.prepare(ctx)
    stats = method.fit(ctx)
    assert stats.steps >= 2 and all(math.isfinite(x) for x in stats.losses)
    assert method.objective.info["name"] == objective

    inputs = [e.input for e in ctx.splits.test[:3]]
    before = method.predict(ctx, inputs)
    assert len(before) == len(inputs) and all(isinstance(p, str) for p in before)
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    method.save(artifact)
    fresh = build_method(name, None, objective_options)
    fresh.prepare(ctx)
    fresh.restore(artifact)
    assert fresh.predict(ctx, inputs) == before
