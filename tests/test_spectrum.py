"""`partial` with select: snr (Spectrum): the signal-to-noise ratio finds low-rank signal in noise, the choice
picks the matrices that carry it, the trained count is the declared one, and the choice is recorded."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunebench.core.errors import SpecError
from tunebench.core.typed import build
from tunebench.estimate.devices import resolve_device
from tunebench.estimate.model import estimate
from tunebench.estimate.shapes import resolve_arch
from tunebench.methods import METHODS, Context
from tunebench.methods.cost import partial_trained
from tunebench.methods.spectrum import choose_by_snr, matrix_snr, mp_median
from tunebench.models import resolve_model
from tunebench.models.blocks import transformer_blocks
from tunebench.tasks import build_task
from tunebench.train.budget import Budget


def _spike(rows: int, cols: int, times_edge: float, gen: torch.Generator) -> torch.Tensor:
    """A rank-2 matrix whose singular values sit `times_edge` times above the noise edge of 0.02 noise."""
    low = torch.randn(rows, 2, generator=gen) @ torch.randn(2, cols, generator=gen)
    edge = 0.02 * (math.sqrt(rows) + math.sqrt(cols))
    return low / torch.linalg.matrix_norm(low, 2) * edge * times_edge


def test_the_marchenko_pastur_median_is_gavish_and_donohos():
    assert mp_median(1.0) == pytest.approx(0.6528, abs=2e-4)  # their μ_β for square matrices
    assert mp_median(0.25) > mp_median(0.5) > mp_median(1.0)  # a narrower bulk, centred nearer 1


@pytest.mark.parametrize("shape", [(64, 64), (64, 128), (128, 32)])
def test_noise_has_almost_no_signal_and_a_spike_is_found(shape):
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(*shape, generator=gen) * 0.02
    plain, spiked = matrix_snr(noise), matrix_snr(noise + _spike(*shape, 3.0, gen))
    assert plain.sigma == pytest.approx(0.02, rel=0.05)
    assert plain.signal <= 1  # at most one value just past the edge (finite-size fluctuation)
    assert spiked.signal == 2 and spiked.snr > 2 * plain.snr
    # scale-free: the same matrix ten times larger has the same ratio
    assert matrix_snr(10 * noise).snr == pytest.approx(plain.snr, abs=1e-6)


#: (block, kind) given a rank-2 signal on top of noise; every other block matrix is noise alone.
SIGNAL = {(2, "self_attn.q_proj"), (0, "self_attn.v_proj"), (3, "mlp.down_proj"), (1, "mlp.up_proj")}


def _model_with_signal() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=32, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i, block in enumerate(model.model.layers):
            for name, module in block.named_modules():
                if isinstance(module, torch.nn.Linear):
                    rows, cols = module.weight.shape
                    weight = torch.randn(rows, cols, generator=gen) * 0.02
                    if (i, name) in SIGNAL:
                        weight += _spike(rows, cols, 3.0, gen)
                    module.weight.copy_(weight)
    return model


def test_the_snr_choice_picks_the_signal_matrices():
    blocks = transformer_blocks(_model_with_signal())
    chosen = {(c.block, c.kind) for c in choose_by_snr(blocks, 1)}
    assert len(chosen) == 7  # one of each kind: q k v o gate up down
    assert chosen >= SIGNAL
    # through the method: exactly those matrices train (with the head and the final norm), blocks' norms not
    task = build_task("arithmetic", {"digits": 1, "train_size": 8, "dev_size": 2, "test_size": 2})
    method = METHODS.get("partial")(
        build(METHODS.get("partial").Options, {"blocks": 1, "select": "snr"}, "p")
    )
    model = _model_with_signal().requires_grad_(False)
    ctx = _context(task, Budget(steps=1))
    method.adapt(model, ctx)
    trained = {n.removesuffix(".weight") for n, p in model.named_parameters() if p.requires_grad}
    expected = {f"model.layers.{i}.{kind}" for i, kind in chosen} | {"model.embed_tokens", "model.norm"}
    assert trained == expected
    picked = {(m["block"], m["kind"]) for m in method.info()["matrices"]}
    assert picked == chosen and method.info()["select"] == "snr"


def _context(task, budget: Budget) -> Context:
    return Context(
        model=resolve_model("tiny-llama"),
        task=task,
        splits=task.splits(),
        budget=budget,
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
    )


def test_snr_partial_trains_the_declared_count_and_reloads_the_same_choice(tmp_path):
    task = build_task("arithmetic", {"digits": 1, "train_size": 16, "dev_size": 2, "test_size": 4})
    ctx = _context(task, Budget(steps=3, batch_size=4, lr=1e-3, max_length=48))
    cls = METHODS.get("partial")
    arch = resolve_arch("tiny-llama")
    counts = {}
    for select in ("last", "snr"):
        options = build(cls.Options, {"blocks": 1, "select": select}, "partial")
        method = cls(options)
        method.prepare(ctx)
        trainable, _ = method.param_counts()
        # the declared count is the trained one, the final norm (trained in both modes) included
        assert trainable == partial_trained(arch, options)
        counts[select] = trainable
    # the same matrix weights; snr leaves the chosen blocks' two norms frozen
    assert counts["last"] - counts["snr"] == 2 * arch.hidden
    assert len(method.info()["matrices"]) == 7
    method.fit(ctx)
    inputs = [e.input for e in ctx.splits.test]
    before = method.predict(ctx, inputs)
    (tmp_path / "artifact").mkdir()
    method.save(tmp_path / "artifact")
    fresh = cls(options)
    fresh.prepare(ctx)  # chooses again from the same pretrained weights: the same tensors
    fresh.restore(tmp_path / "artifact")
    assert fresh.info() == method.info()
    assert fresh.predict(ctx, inputs) == before


def test_the_estimate_follows_the_choice():
    arch, gpu = resolve_arch("smollm2-135m"), resolve_device("A100-80GB")
    last = estimate(arch, "partial", gpu, options={"blocks": 4, "output_head": False})
    snr = estimate(arch, "partial", gpu, options={"blocks": 4, "output_head": False, "select": "snr"})
    assert last.trainable - snr.trainable == 4 * 2 * arch.hidden  # two RMSNorms per block stay frozen
    # a chosen matrix may sit in the first block: gradients and activations through every block
    assert snr.memory["activations"] > last.memory["activations"]


def test_a_select_typo_names_the_choices():
    with pytest.raises(
        SpecError, match=r"partial.select: expected last or snr, got 'srn'.*Did you mean 'snr'"
    ):
        build(METHODS.get("partial").Options, {"select": "srn"}, "partial")
