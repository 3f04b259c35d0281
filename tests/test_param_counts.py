"""Trainable and total parameter counts are exact: checked against hand counts on the tiny Llama.

tiny-llama: vocabulary V, hidden 64, MLP 128, 2 blocks, 4 query heads and 2 key/value heads of 16
(so k and v project to 32), tied input/output embeddings.
"""

from __future__ import annotations

import pytest
import torch

from tunebench.core.typed import build
from tunebench.methods import METHODS, Context
from tunebench.models import resolve_model
from tunebench.models.load import load_tokenizer
from tunebench.tasks import build_task
from tunebench.train.budget import Budget

H, F, L, KV = 64, 128, 2, 32
LINEARS = [(H, H), (H, KV), (H, KV), (H, H), (H, F), (H, F), (F, H)]  # q k v o gate up down: (in, out)


def _vocab() -> int:
    return len(load_tokenizer(resolve_model("tiny-llama")))


def base_total() -> int:
    block = sum(i * o for i, o in LINEARS) + 2 * H  # linear weights (no biases) + two RMSNorm weights
    return _vocab() * H + L * block + H  # embeddings (tied with the head) + blocks + final norm


def _counts(method: str, **options) -> tuple[int, int]:
    task = build_task("arithmetic", {"digits": 1, "train_size": 8, "dev_size": 2, "test_size": 2})
    model = resolve_model("tiny-llama")
    cls = METHODS.get(method)
    m = cls(build(cls.Options, options, method))
    ctx = Context(
        model=model,
        task=task,
        splits=task.splits(),
        budget=Budget(steps=1),
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )
    m.prepare(ctx)
    return m.param_counts()


def test_prompting_and_full():
    assert _counts("zero-shot") == (0, base_total())
    assert _counts("full") == (base_total(), base_total())


@pytest.mark.parametrize("r", [1, 8])
def test_lora_and_dora(r):
    lora = L * sum(r * (i + o) for i, o in LINEARS)
    assert _counts("lora", r=r) == (lora, base_total() + lora)
    dora = lora + L * sum(o for _, o in LINEARS)  # one magnitude per output feature
    assert _counts("dora", r=r) == (dora, base_total() + dora)


def test_partial():
    block = sum(i * o for i, o in LINEARS) + 2 * H
    # the last block, the final norm and the (tied) output head = the embedding matrix
    assert _counts("partial", blocks=1) == (block + H + _vocab() * H, base_total())
    assert _counts("partial", blocks=2, output_head=False) == (2 * block + H, base_total())


@pytest.mark.parametrize(
    ("build_model", "where"),
    [
        (lambda t: t.GPT2LMHeadModel(t.GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50)), "transformer.ln_f"),
        (lambda t: t.OPTForCausalLM(t.OPTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                               ffn_dim=32, vocab_size=50, word_embed_proj_dim=16)),
         "model.decoder.final_layer_norm"),
        (lambda t: t.LlamaForCausalLM(t.LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                   intermediate_size=32, vocab_size=50)), "model.norm"),
        (lambda t: t.BertModel(t.BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=32, vocab_size=50)), None),
    ],
)  # fmt: skip
def test_the_final_norm_is_found_whatever_the_family_calls_it(build_model, where):
    """partial trains the norm between the last block and the head (GPT-2 calls it ln_f, OPT
    final_layer_norm); a BERT-style encoder has none (its one outer norm is on the embeddings)."""
    import transformers

    from tunebench.models.blocks import final_norm

    model = build_model(transformers)
    expected = model.get_submodule(where) if where else None
    assert final_norm(model) is expected


@pytest.mark.parametrize(("placement", "per_block"), [("houlsby", 2), ("pfeiffer", 1)])
def test_bottleneck_adapter(placement, per_block):
    d = H // 16
    one = (H * d + d) + (d * H + H)  # down (weight + bias) + up (weight + bias)
    n = L * per_block * one
    assert _counts("adapter", placement=placement, reduction=16) == (n, base_total() + n)


def test_ia3():
    # PEFT's Llama defaults: rescale k and v outputs (32 each) and the input of down_proj (128)
    n = L * (KV + KV + F)
    assert _counts("ia3") == (n, base_total() + n)


def test_prompt_tuning():
    assert _counts("prompt", virtual_tokens=5) == (5 * H, base_total() + 5 * H)


def test_prefix_tuning():
    # a key and a value vector per virtual token, per block, at the key/value width (grouped-query: 32)
    n = 5 * L * 2 * KV
    assert _counts("prefix", virtual_tokens=5) == (n, base_total() + n)


def test_qlora_counts_the_quantized_weights_at_their_own_size():
    """The NF4 base packs two weights a byte; the total still counts each weight once, as LoRA's does."""
    pytest.importorskip("bitsandbytes")
    r = 8
    lora = L * sum(r * (i + o) for i, o in LINEARS)
    assert _counts("qlora", r=r) == (lora, base_total() + lora)


# -- LoRA's variants: rsLoRA, Gaussian init, LoRA+ -----------------------------------------------------


def test_lora_variants_reach_peft():
    """rslora scales by alpha / sqrt(r); gaussian is PEFT's Gaussian init; lr_ratio puts the B matrices
    at lr × ratio (PEFT's LoRA+ grouping) and keeps a new head at its own rate."""
    task = build_task("arithmetic", {"digits": 1, "train_size": 16, "dev_size": 2, "test_size": 2})
    ctx = Context(resolve_model("tiny-llama"), task, task.splits(), Budget(steps=2, batch_size=4, lr=1e-3),
                  seed=0, device=torch.device("cpu"), bf16=False)  # fmt: skip
    cls = METHODS.get("lora")
    lora = cls(
        build(cls.Options, {"r": 4, "alpha": 8, "rslora": True, "init": "gaussian", "lr_ratio": 16}, "lora")
    )
    lora.prepare(ctx)
    config = lora.model.peft_config["default"]
    assert config.use_rslora and config.init_lora_weights == "gaussian"
    layer = next(m for m in lora.model.modules() if hasattr(m, "lora_A") and "default" in m.lora_A)
    assert layer.scaling["default"] == pytest.approx(8 / 2)  # alpha / sqrt(r), not alpha / r = 2
    groups = lora.param_groups(ctx)
    lr = ctx.budget.filled().lr
    by_name = {id(p): n for n, p in lora.model.named_parameters()}
    for group in groups:
        names = [by_name[id(p)] for p in group["params"]]
        expected = lr * 16 if all("lora_B" in n for n in names) else lr
        assert group["lr"] == pytest.approx(expected), names[:2]
    assert any(
        "lora_B" in by_name[id(p)] for g in groups if g["lr"] == pytest.approx(lr * 16) for p in g["params"]
    )
    assert lora.fit(ctx).steps == ctx.budget.steps


def test_qlora_with_a_dev_curve_on_a_cpu_is_refused_not_trained_wrong():
    """With dev evaluations during training, QLoRA's CPU training went wrong (0% against 38.7% without
    them, SmolLM2-135M): the run is refused with the reason instead of recorded as a result."""
    from tunebench.core.errors import UnsupportedError

    task = build_task("arithmetic", {"digits": 1, "train_size": 16, "dev_size": 2, "test_size": 2})
    budget = Budget(steps=2, batch_size=4, lr=1e-3, dev_every=1)
    ctx = Context(
        resolve_model("tiny-llama"),
        task,
        task.splits(),
        budget,
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )
    qlora = METHODS.get("qlora")()
    qlora.prepare(ctx)
    with pytest.raises(UnsupportedError, match="qlora with dev_every on a CPU"):
        qlora.fit(ctx)
