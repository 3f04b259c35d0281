"""LoRA's initializations (`init`) on tiny random models: each starts where it says it starts, trains, and
its artifact reloaded on a freshly loaded, untouched base answers as the trained model did.

PiSSA and OLoRA rewrite the base weights (W becomes the residual W − s·B₀A₀), so their artifact is the
equivalent plain LoRA of rank 2r on the untouched base; EVA keeps the base and sets its own ranks; LoftQ
needs a CUDA or XPU device in PEFT 0.21 and is refused elsewhere.
"""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from word_data import write_word_sentiment

from tunebench.core.errors import SpecError, UnsupportedError
from tunebench.core.typed import build
from tunebench.estimate.shapes import resolve_arch
from tunebench.methods import METHODS, Context
from tunebench.methods.heads import unwrap
from tunebench.methods.peft_methods import TO_PLAIN_LORA, LoraOptions, loftq_unavailable, lora_artifact
from tunebench.models import resolve_model
from tunebench.models.load import load_causal_lm, load_tokenizer
from tunebench.serve.artifacts import inspect
from tunebench.serve.lanes import NotMixable, SharedLane
from tunebench.tasks import build_task
from tunebench.train.budget import Budget
from tunebench.train.data import collate, encode_labelled

# Small enough for seconds per init on the tiny models; lr high enough for a visible fall in 16 steps.
OPTIONS = {"r": 4, "alpha": 8}
TRAINED_INITS = ["default", "gaussian", "pissa", "olora", "eva"]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    data = write_word_sentiment(tmp_path_factory.mktemp("data") / "sentiment.jsonl")
    classification = build_task("file", {"path": str(data), "input": "text", "target": "label"})
    generation = build_task("arithmetic", {"digits": 1, "train_size": 24, "dev_size": 4, "test_size": 8})
    return {"tiny-llama": generation, "tiny-bert": classification}


def _context(model_name, task, lr=1e-2):
    return Context(
        model=resolve_model(model_name),
        task=task,
        splits=task.splits(),
        budget=Budget(steps=16, batch_size=8, lr=lr, warmup=0.0, max_length=48, eval_batch_size=4),
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )


def _lora(init: str, name: str = "lora"):
    cls = METHODS.get(name)
    return cls(build(cls.Options, {**OPTIONS, "init": init}, name))


@torch.no_grad()
def _logits(method, ctx) -> torch.Tensor:
    """The model's logits on the test inputs: every position for a decoder, the labels for a classifier."""
    inputs = [e.input for e in ctx.splits.test]
    encoded, _ = encode_labelled(method.tokenizer, inputs, [0] * len(inputs), ctx.budget.max_length)
    batch = collate(encoded, method.tokenizer.pad_token_id)
    method.model.eval()
    return method.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def _base_weights(method) -> dict[str, torch.Tensor]:
    """The frozen weight matrices of the adapted layers (not their biases), by their base model's names."""
    return {
        n.replace(".base_layer", ""): p.detach().clone()
        for n, p in unwrap(method.model).named_parameters()
        if n.endswith(".base_layer.weight")
    }


@pytest.mark.parametrize("init", TRAINED_INITS)
@pytest.mark.parametrize("model_name", ["tiny-llama", "tiny-bert"])
def test_init_starts_at_the_base_trains_and_reloads(init, model_name, scenarios, tmp_path):
    ctx = _context(model_name, scenarios[model_name])
    reference = _lora("default")  # B = 0: the base model's function (and, same seed, the same new head)
    reference.prepare(ctx)
    base_logits, base_weights = _logits(reference, ctx), _base_weights(reference)
    del reference

    method = _lora(init)
    method.check(ctx.task, ctx.model)
    method.prepare(ctx)
    # Before training every one of these inits computes what the base computes: PiSSA's and OLoRA's
    # residual plus their adapter is W, EVA's and the default's B is zero.
    torch.testing.assert_close(_logits(method, ctx), base_logits, atol=1e-4, rtol=1e-4)
    changed = [n for n, w in _base_weights(method).items() if not torch.equal(w, base_weights[n])]
    if init in TO_PLAIN_LORA:
        assert len(changed) == len(base_weights)  # every adapted W became its residual
    else:
        assert not changed
    info = method.info()
    assert (info is None) == (init in ("default", "gaussian"))
    if info is not None:
        assert info["init"] == init and info["rewrites_base"] == (init in TO_PLAIN_LORA)
    lora_trainable = sum(
        p.numel() for n, p in method.model.named_parameters() if p.requires_grad and ".lora_" in n
    )

    stats = method.fit(ctx)
    assert sum(stats.losses[-4:]) / 4 < sum(stats.losses[:4]) / 4, f"{init} did not learn: {stats.losses}"
    inputs = [e.input for e in ctx.splits.test]
    trained = method.predict(ctx, inputs)
    trained_logits = _logits(method, ctx)

    artifact = tmp_path / "artifact"
    artifact.mkdir()
    method.save(artifact)
    config = json.loads((artifact / "adapter_config.json").read_text())
    tensors = load_file(str(artifact / "adapter_model.safetensors"))
    factors = sum(t.numel() for n, t in tensors.items() if ".lora_A." in n or ".lora_B." in n)
    if init in TO_PLAIN_LORA:
        # a plain LoRA of twice the rank at the same scale, for the untouched base; the head kept
        assert config["r"] == 2 * OPTIONS["r"] and config["lora_alpha"] == 2 * OPTIONS["alpha"]
        assert config["init_lora_weights"] is True
        assert factors == 2 * lora_trainable
    else:
        assert config["r"] == OPTIONS["r"] and factors == lora_trainable
    if model_name == "tiny-bert":
        assert any("classifier" in n for n in tensors), "the new head must be in the artifact"

    fresh = _lora(init)
    fresh.prepare(ctx)
    fresh.restore(artifact)
    assert _base_weights(fresh).keys() == base_weights.keys()
    assert all(torch.equal(w, base_weights[n]) for n, w in _base_weights(fresh).items()), (
        "the artifact must load on the untouched base"
    )
    assert fresh.predict(ctx, inputs) == trained
    torch.testing.assert_close(_logits(fresh, ctx), trained_logits, atol=1e-4, rtol=1e-4)

    # Merging (served merged, latency measured merged) folds W_res + s·B·A, or W + s·B'·A': the same model.
    assert fresh.merge() and method.merge()
    torch.testing.assert_close(_logits(method, ctx), trained_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(_logits(fresh, ctx), trained_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("init", TO_PLAIN_LORA)
def test_plain_lora_artifact_loads_with_peft_on_the_original_base(init, scenarios, tmp_path):
    """What `tunebench serve` and any PEFT user do: PeftModel.from_pretrained on the untouched base."""
    ctx = _context("tiny-llama", scenarios["tiny-llama"])
    method = _lora(init)
    method.prepare(ctx)
    method.fit(ctx)
    method.save(tmp_path)
    served = PeftModel.from_pretrained(load_causal_lm(ctx.model, ctx.device), str(tmp_path)).eval()
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    method.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(served(input_ids=ids).logits, method.model(input_ids=ids).logits)
    assert inspect(tmp_path).rewrites_base is None  # joins the shared base with the other adapters


def test_artifact_cost_counts_the_doubled_rank(scenarios, tmp_path):
    """The estimator's artifact size for pissa/olora is the exported file's: rank 2r (here the decoder's
    LM adapters only, no new head)."""
    arch = resolve_arch("tiny-llama")
    ctx = _context("tiny-llama", scenarios["tiny-llama"])
    for init in ("default", "olora"):
        method = _lora(init)
        method.prepare(ctx)
        folder = tmp_path / init
        folder.mkdir()
        method.save(folder)
        tensors = load_file(str(folder / "adapter_model.safetensors"))
        assert sum(t.numel() for t in tensors.values()) == lora_artifact(arch, method.options)
    assert lora_artifact(arch, LoraOptions(**OPTIONS, init="pissa")) == 2 * lora_artifact(
        arch, LoraOptions(**OPTIONS)
    )


def test_base_rewriting_adapter_is_kept_off_the_shared_base(scenarios, tmp_path):
    """An adapter saved without conversion (PEFT's own PiSSA/OLoRA/LoftQ file) would rewrite the base as PEFT
    loads it; the server gives it a base of its own instead of the one the other adapters share."""
    model = resolve_model("tiny-llama")
    config = LoraConfig(r=2, init_lora_weights="olora", target_modules=["q_proj"], task_type="CAUSAL_LM")
    get_peft_model(load_causal_lm(model, torch.device("cpu")), config).save_pretrained(str(tmp_path))
    artifact = inspect(tmp_path)
    assert artifact.rewrites_base == "olora"
    base = load_causal_lm(model, torch.device("cpu"))
    before = {n: p.clone() for n, p in base.named_parameters()}
    lane = SharedLane("tiny-llama", base, load_tokenizer(model))
    with pytest.raises(NotMixable, match="olora init to the base weights"):
        lane.add(artifact)
    assert all(torch.equal(p, before[n]) for n, p in lane.model.named_parameters())


def test_bad_init_values_are_named():
    with pytest.raises(SpecError, match=r"lora\.init: expected one of .*pissa.*Did you mean 'pissa'"):
        build(LoraOptions, {"init": "pisa"}, "lora")
    with pytest.raises(SpecError, match=r"dora\.init: pissa is not available here: .*magnitude"):
        build(METHODS.get("dora").Options, {"init": "pissa"}, "dora")
    with pytest.raises(SpecError, match=r"qlora\.init: olora is not available here: .*re-quantize"):
        build(METHODS.get("qlora").Options, {"init": "olora"}, "qlora")
    build(METHODS.get("qlora").Options, {"init": "eva"}, "qlora")  # the base stays as it is: allowed


@pytest.mark.skipif(loftq_unavailable() is None, reason="this machine can run PEFT's LoftQ")
def test_loftq_is_refused_where_peft_cannot_run_it(scenarios):
    ctx = _context("tiny-llama", scenarios["tiny-llama"])
    method = _lora("loftq")
    with pytest.raises(UnsupportedError, match="lora with init: loftq on tiny-llama needs a CUDA or XPU"):
        method.check(ctx.task, ctx.model)
