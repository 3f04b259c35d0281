"""AdaLoRA in tunebench's loop: its training hook prunes to the rank budget, adds the orthogonality
regulariser, and keeps its allocator's state across a checkpoint, so a run stopped and continued (a resumed
run, a rung of successive halving) ends exactly where an uninterrupted one does."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tunebench.core.typed import build
from tunebench.methods import METHODS, Context
from tunebench.methods.peft_methods import adalora_model
from tunebench.models import resolve_model
from tunebench.tasks import build_task
from tunebench.train.budget import Budget
from tunebench.train.checkpoint import Checkpointer

STEPS = 12
OPTIONS = {"init_r": 4, "target_r": 2, "tinit": 0.1, "tfinal": 0.4}


def _context(**budget) -> Context:
    task = build_task("arithmetic", {"digits": 1, "train_size": 24, "dev_size": 2, "test_size": 4})
    return Context(
        resolve_model("tiny-llama"),
        task,
        task.splits(),
        Budget(steps=STEPS, batch_size=4, lr=1e-2, warmup=0.0, max_length=48, **budget),
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )


def _adalora(ctx: Context, **options):
    cls = METHODS.get("adalora")
    method = cls(build(cls.Options, {**OPTIONS, **options}, "adalora"))
    method.prepare(ctx)
    return method


def _singular_values(method) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in method.model.named_parameters() if "lora_E" in n}


def test_training_prunes_to_the_budget_and_adds_the_regulariser():
    ctx = _context()
    method = _adalora(ctx)
    tuner = adalora_model(method.model)
    hook = method.train_hook()
    hook.start(method.model, STEPS)
    penalty = hook.loss(method.model)
    assert penalty is not None and float(penalty) > 0  # random P, Q are far from orthogonal at the start
    assert _adalora(ctx, orth_reg_weight=0.0).train_hook().loss(method.model) is None

    stats = method.fit(ctx)
    assert stats.steps == STEPS
    config = tuner.peft_config["default"]
    assert config.total_step == STEPS and config.tinit == 1 and config.tfinal == 4
    values = _singular_values(method)
    kept = sum(int((v != 0).sum()) for v in values.values())
    # the budget is an average rank of target_r over the adapted matrices (a tie at the threshold prunes more)
    assert 0 < kept <= OPTIONS["target_r"] * len(values) < OPTIONS["init_r"] * len(values)
    assert config.rank_pattern is not None


def test_a_stopped_and_continued_run_ends_where_an_uninterrupted_one_does(tmp_path):
    straight = _adalora(_context())
    straight.fit(_context())

    # Stopped after step 5 (in the pruning phase) with its state saved, as a rung of successive halving
    # is; then a fresh object continues from that state to the end, as the next rung or a resumed run does.
    checkpoint = Checkpointer(tmp_path / "state", every=0, tag="t")
    checkpoint.at_stop = True
    first = _context()
    first = dataclasses.replace(
        first, checkpoint=checkpoint, on_train_step=lambda step, steps, loss: step == 5
    )
    stopped = _adalora(first)
    assert stopped.fit(first).steps == 5
    saved = checkpoint.meta()
    assert saved is not None and saved["step"] == 5

    second = dataclasses.replace(_context(), checkpoint=Checkpointer(tmp_path / "state", every=0, tag="t"))
    resumed = _adalora(second)
    stats = resumed.fit(second)
    assert stats.resumed_from == 5 and stats.steps == STEPS
    expected, got = _singular_values(straight), _singular_values(resumed)
    for name in expected:
        assert torch.allclose(expected[name], got[name], atol=1e-6), name
        assert torch.equal(expected[name] == 0, got[name] == 0), name  # the same triplets pruned
    patterns = [adalora_model(m.model).peft_config["default"].rank_pattern for m in (straight, resumed)]
    assert patterns[0] == patterns[1]


def test_the_exported_adapter_holds_the_survivors_and_loads_back_whole(tmp_path):
    import json

    from safetensors.torch import load_file

    ctx = _context()
    method = _adalora(ctx)
    method.fit(ctx)
    inputs = [e.input for e in ctx.splits.test]
    before = method.predict(ctx, inputs)
    method.save(tmp_path)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    pattern = json.loads((tmp_path / "adapter_config.json").read_text())["rank_pattern"]
    kept = sum(sum(mask) for mask in pattern.values())
    assert sum(t.numel() for n, t in saved.items() if n.endswith("lora_E")) == kept  # PEFT's pruned format

    fresh = _adalora(ctx)
    fresh.restore(tmp_path)
    assert fresh.param_counts() == method.param_counts()
    assert fresh.predict(ctx, inputs) == before


def test_objectives_trained_outside_the_loop_are_refused():
    from tunebench.core.errors import UnsupportedError
    from tunebench.objectives import build_method

    ctx = _context()
    with pytest.raises(UnsupportedError, match="adalora\\+dpo: AdaLoRA prunes"):
        build_method("adalora+dpo").check(ctx.task, ctx.model)
    build_method("adalora+distill:alpaca").check(ctx.task, ctx.model)  # trained in tunebench's loop
