"""GaLore: the optimizer galore-torch allocates matches the declared cost, a killed run resumes with the same
projections, TRL objectives get the same optimizer, and bad options or a missing package are refused."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest
import torch

from tunebench.core.errors import SpecError, UnsupportedError
from tunebench.core.typed import build
from tunebench.estimate.devices import resolve_device
from tunebench.estimate.model import Setting, estimate
from tunebench.estimate.shapes import resolve_arch
from tunebench.methods import METHODS, Context
from tunebench.methods.cost import galore_projections, galore_states
from tunebench.methods.galore import PROJ_TYPES
from tunebench.models import resolve_model
from tunebench.objectives.trl_run import trainer_optimizers
from tunebench.tasks import build_task
from tunebench.train.budget import Budget
from tunebench.train.checkpoint import Checkpointer
from tunebench.train.data import collate

pytest.importorskip("galore_torch")


def _classification(tmp_path):
    data = tmp_path / "sentiment.jsonl"
    rows = [{"text": f"{w} {w}", "label": label} for w, label in [("good", "pos"), ("bad", "neg")] * 8]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return build_task("file", {"path": str(data), "input": "text", "target": "label"})


def _prepared(model_name: str, task, budget: Budget | None = None, **options):
    model = resolve_model(model_name)
    method = METHODS.get("galore")(build(METHODS.get("galore").Options, options, "galore"))
    ctx = Context(
        model=model,
        task=task,
        splits=task.splits(),
        budget=budget or Budget(steps=1, batch_size=4, lr=1e-3, max_length=48),
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )
    method.check(task, model)
    method.prepare(ctx)
    return method, ctx


def _one_step(method, ctx) -> torch.optim.Optimizer:
    """One optimizer step of the method's own optimizer, built as the loop builds it (with its head groups)."""
    params = [p for p in method.model.parameters() if p.requires_grad]
    groups = method.param_groups(ctx)
    optimizer = method.optimizer_factory()(groups or params, ctx.budget.filled())
    examples, _ = method.head.encode(method, ctx)
    batch = collate(examples[:4], method.tokenizer.pad_token_id)  # the loop's own padding
    loss = method.head.loss_fn(method)(method.model, batch)
    loss.backward()
    optimizer.step()
    return optimizer


def _allocated(optimizer: torch.optim.Optimizer) -> tuple[int, int, int]:
    """(values in each Adam moment, projection values, bytes of every state tensor), as allocated."""
    moments = projections = nbytes = 0
    for state in optimizer.state.values():
        assert state["exp_avg"].numel() == state["exp_avg_sq"].numel()
        moments += state["exp_avg"].numel()
        nbytes += 2 * state["exp_avg"].numel() * state["exp_avg"].element_size()
        if "projector" in state:
            ortho = state["projector"].ortho_matrix
            for t in ortho if isinstance(ortho, list) else [ortho]:
                projections += t.numel()
                nbytes += t.numel() * t.element_size()
    return moments, projections, nbytes


@pytest.mark.parametrize("proj_type", PROJ_TYPES)
@pytest.mark.parametrize("rank", [8, 40])  # 40: above k and v's 32 outputs, so those are cut to 32
def test_allocated_optimizer_states_match_the_declared_cost(proj_type, rank):
    task = build_task("arithmetic", {"digits": 1, "train_size": 8, "dev_size": 2, "test_size": 2})
    arch = resolve_arch("tiny-llama")
    if proj_type == "reverse_std" and rank >= 32:  # galore-torch's project_back fails there: refused
        with pytest.raises(UnsupportedError, match="use a rank below 32 or proj_type std"):
            _prepared("tiny-llama", task, rank=rank, proj_type=proj_type)
        options = build(METHODS.get("galore").Options, {"rank": rank, "proj_type": proj_type}, "galore")
        with pytest.raises(SpecError, match="below the smallest block-matrix side of tiny-llama, 32"):
            estimate(arch, "galore", resolve_device("A100-80GB"), Setting(), options)
        return
    method, ctx = _prepared("tiny-llama", task, rank=rank, proj_type=proj_type)
    moments, projections, nbytes = _allocated(_one_step(method, ctx))
    assert moments == galore_states(arch, method.options)
    assert projections == galore_projections(arch, method.options)
    assert method.info()["projected_matrices"] == 2 * 7  # q k v o gate up down in each of the 2 blocks
    # and `tunebench estimate` counts the same bytes (fp32: no master copy, 4-byte states)
    est = estimate(arch, "galore", resolve_device("A100-80GB"), Setting(precision="fp32"), method.options)
    assert est.memory["optimizer"] == nbytes
    full = estimate(arch, "full", resolve_device("A100-80GB"), Setting(precision="fp32"))
    assert est.trainable == full.trainable == arch.params
    assert est.memory["optimizer"] < full.memory["optimizer"]


def test_a_classifier_head_and_the_encoder_extras_keep_plain_adam(tmp_path):
    """tiny-bert with a classification head: the head (its own rate), embeddings, LayerNorms and biases keep
    full-size moments; the six matrices of each block are projected."""
    method, ctx = _prepared("tiny-bert", _classification(tmp_path), rank=4)
    optimizer = _one_step(method, ctx)
    projected = [g for g in optimizer.param_groups if "rank" in g]
    assert sum(len(g["params"]) for g in projected) == 2 * 6
    head_lr = method.head_info["lr"]
    assert {g["lr"] for g in optimizer.param_groups} == {ctx.budget.lr, head_lr}
    moments, projections, _ = _allocated(optimizer)
    arch = dataclasses.replace(resolve_arch("tiny-bert"), classes=2)
    assert moments == galore_states(arch, method.options)
    assert projections == galore_projections(arch, method.options)


class Interrupted(Exception):
    """Stands for a kill: raised from the step callback."""


def _fit(ckpt: Checkpointer | None, stop_after: int | None = None):
    task = build_task("arithmetic", {"digits": 1, "train_size": 24, "dev_size": 2, "test_size": 2})
    budget = Budget(steps=8, batch_size=4, lr=1e-3, warmup=0.0, max_length=48)
    # the projection is recomputed at steps 0, 2, 4, 6: the checkpoint at 3 must carry step 2's
    method, ctx = _prepared("tiny-llama", task, budget, rank=4, update_proj_gap=2)

    def on_step(step: int, steps: int, loss: float) -> None:
        if step == stop_after:
            raise Interrupted

    stats = method.fit(dataclasses.replace(ctx, on_train_step=on_step, checkpoint=ckpt))
    return stats, method.model


def test_a_killed_run_resumes_with_the_same_projections(tmp_path):
    whole, whole_model = _fit(None)
    ckpt = Checkpointer(tmp_path / "checkpoint", every=3, tag="t")
    with pytest.raises(Interrupted):
        _fit(ckpt, stop_after=5)
    assert ckpt.meta()["step"] == 3
    resumed, resumed_model = _fit(Checkpointer(tmp_path / "checkpoint", 3, "t"))
    assert resumed.resumed_from == 3 and resumed.steps == 8
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-5)
    for (name, a), (_, b) in zip(
        whole_model.named_parameters(), resumed_model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_trl_objectives_get_the_methods_optimizer():
    task = build_task("arithmetic", {"digits": 1, "train_size": 8, "dev_size": 2, "test_size": 2})
    method, ctx = _prepared("tiny-llama", task)
    optimizer, scheduler = trainer_optimizers(method, ctx.budget)
    assert type(optimizer).__module__.startswith("galore_torch") and scheduler is None
    assert any("rank" in g for g in optimizer.param_groups)
    full = METHODS.get("full")()
    full.prepare(ctx)
    assert trainer_optimizers(full, ctx.budget) == (None, None)


def test_bad_options_and_a_missing_package_are_refused(monkeypatch):
    cls = METHODS.get("galore")
    with pytest.raises(SpecError, match=r"galore.proj_type: .*'stdd'.*Did you mean 'std'"):
        build(cls.Options, {"proj_type": "stdd"}, "galore")
    with pytest.raises(SpecError, match=r"galore\.rank"):
        build(cls.Options, {"rank": 0}, "galore")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "galore_torch" else real(name, *a)
    )
    task = build_task("arithmetic", {"digits": 1, "train_size": 8, "dev_size": 2, "test_size": 2})
    with pytest.raises(UnsupportedError, match=r"pip install 'tunebench\[galore\]'"):
        cls().check(task, resolve_model("tiny-llama"))
