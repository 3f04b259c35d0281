"""What a method costs, declared by the method itself (`Method.cost`): the estimator reads nothing else.

A method says what it trains (base weights, new parameters), how deep gradients travel (how many blocks keep
activations), whether the frozen base is quantized, how many virtual tokens it adds, what transient buffer
it needs and what its artifact holds. Every callable takes (arch, options): the model's shapes
(models/arch.py) and the method's own options, so `tunebench estimate --opt r=8` means what `r: 8` means in a
spec. `tunebench estimate` covers every registered method by construction, and a test fails for a method
that declares no cost.

Parameter counts follow the papers:
  LoRA (Hu et al., 2021): r · (d_in + d_out) per adapted matrix.
  DoRA (Liu et al., 2024): LoRA plus a magnitude vector of d_out per matrix; the merged weight W + BA is
    formed in the forward pass (one d_in × d_out buffer per adapted matrix at a time).
  (IA)³ (Liu et al., 2022): learned vectors rescaling keys, values and the feed-forward activation.
  QLoRA (Dettmers et al., 2023): LoRA on a frozen NF4 base (blocks of 64 weights, double-quantized
    constants by default); see `estimate.model.nf4_bytes`.
  Adapters (Houlsby et al., 2019): two bottlenecks per block, d → d/reduction → d, with biases.
  Prefix tuning (Li & Liang, 2021): a key and a value vector per virtual token and block.
  Prompt tuning (Lester et al., 2021): one embedding per virtual token.
  VeRA (Kopiczko et al., 2024): a vector of r and one of d_out per adapted matrix.
  LoHa (Hyeon-Woo et al., 2022): two low-rank pairs per adapted matrix, 2r(d_in + d_out).
  Probe: a linear head on frozen features (the architecture's classes, 2 when unset), fitted apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunebench.core.errors import SpecError, did_you_mean
from tunebench.core.typed import require
from tunebench.models.arch import Arch, Linear

#: Module names users write (PEFT's, GPT-2's, BERT's) → the canonical names of `Arch.linears()`.
MODULE_ALIASES = {
    "q_proj": "q", "query": "q", "k_proj": "k", "key": "k", "v_proj": "v", "value": "v",
    "o_proj": "o", "out_proj": "o", "dense": "o", "gate_proj": "gate", "w1": "gate",
    "up_proj": "up", "fc1": "up", "c_fc": "up", "w3": "up", "down_proj": "down", "fc2": "down", "w2": "down",
}  # fmt: skip

ADAPTERS_PER_BLOCK = {"houlsby": 2, "pfeiffer": 1}
#: Weights per absmax constant of bitsandbytes' NF4 (QLoRA's 64; not configurable through transformers).
NF4_BLOCK = 64


def zero(arch: Arch, o: Any) -> int:
    """Nothing of this kind (no parameters added, no block kept for backward)."""
    return 0


def _every_block(arch: Arch, o: Any) -> int:
    return arch.layers


def _no_check(arch: Arch, o: Any, where: str) -> None:
    return None


@dataclass(frozen=True)
class Cost:
    """A method's costs, declared. Every callable takes (arch, the method's options)."""

    note: str
    """What the estimate counts, in words (`tunebench estimate` prints it)."""
    generates: bool = False
    """Answers by generation without training: its inference working set includes a KV cache."""
    base_trained: Callable[[Arch, Any], int] = zero
    """Base-model weights that are trained (and so need gradients and optimizer states)."""
    added: Callable[[Arch, Any], int] = zero
    """New parameters the method adds (all trained)."""
    backprop_layers: Callable[[Arch, Any], int] = _every_block
    """Blocks, from the top, through which gradients flow and whose activations are kept."""
    quantized_base: bool = False
    """The frozen block matrices are stored in 4-bit NF4 (blocks of `NF4_BLOCK`; `double_quant` option)."""
    compute_bytes: int | None = None
    """The method fixes the width of the frozen unquantized weights and of the activations whatever the
    precision (QLoRA: NF4 storage, bf16 computation)."""
    extra_tokens: Callable[[Arch, Any], int] = zero
    """Virtual tokens added to every sequence."""
    block_activations: Callable[[Arch, Any], int] = zero
    """Values per token and block that the method's own modules keep for backward (LoRA: r per matrix)."""
    transient: Callable[[Arch, Any], int] = zero
    """Elements of a temporary per-matrix buffer (DoRA's merged weight, QLoRA's dequantized weight)."""
    formed_per_block: Callable[[Arch, Any], int] = zero
    """Elements the method forms from its weights in each block's forward and keeps for the backward pass,
    whatever the batch (LoHa's two full-size factor products per adapted matrix)."""
    artifact: Callable[[Arch, Any], int] = zero
    """Parameters the exported artifact stores (0: a prompt file of a few kilobytes)."""
    check: Callable[[Arch, Any, str], None] = _no_check
    """Settings that are impossible on this architecture (rank above the hidden size …)."""


# ---- the pieces the methods' declarations are made of ---------------------------------------------------


def targeted(arch: Arch, o: Any, where: str = "--opt") -> list[Linear]:
    """The block matrices a low-rank method adapts, per block."""
    mods = arch.linears()
    if [t.lower() for t in o.target_modules] == ["all-linear"]:
        return mods
    names = [m.name for m in mods]
    chosen = []
    for t in o.target_modules:
        name = MODULE_ALIASES.get(t, t)
        if name not in names:
            raise SpecError(
                f"{where} target_modules: no module {t!r} in {arch.name}."
                f"{did_you_mean(t, [*names, *MODULE_ALIASES])} Modules: {', '.join(names)} (or all-linear)"
            )
        chosen += [m for m in mods if m.name == name and m not in chosen]
    return chosen


def lora_params(arch: Arch, o: Any) -> int:
    return arch.layers * sum(o.r * (m.d_in + m.d_out) for m in targeted(arch, o))


def lora_activations(arch: Arch, o: Any) -> int:
    """A's output (r values) per adapted matrix; A's input is the matrix's input, already kept."""
    return o.r * len(targeted(arch, o))


def dora_activations(arch: Arch, o: Any) -> int:
    """LoRA's, plus per adapted matrix its base output and LoRA output (kept for the magnitude's gradient)
    and a copy of its input: counted from the tensors PEFT 0.21's DoRA layer keeps alive after a forward."""
    mods = targeted(arch, o)
    return lora_activations(arch, o) + sum(2 * m.d_out + m.d_in for m in mods)


def dora_transient(arch: Arch, o: Any) -> int:
    """PEFT forms B·A by passing an identity (d_in × d_in) through the adapter, then W + s·B·A and its norm:
    an identity and three d_out × d_in buffers for the largest adapted matrix."""
    return max(m.d_in * m.d_in + 3 * m.d_in * m.d_out for m in targeted(arch, o))


def dora_params(arch: Arch, o: Any) -> int:
    return lora_params(arch, o) + arch.layers * sum(m.d_out for m in targeted(arch, o))


def vera_params(arch: Arch, o: Any) -> int:
    """VeRA: per adapted matrix a vector d (r) and a vector b (d_out); the shared projections are frozen."""
    return arch.layers * sum(o.r + m.d_out for m in targeted(arch, o))


def loha_params(arch: Arch, o: Any) -> int:
    """LoHa: two low-rank pairs per adapted matrix, 2 · r · (d_in + d_out)."""
    return arch.layers * sum(2 * o.r * (m.d_in + m.d_out) for m in targeted(arch, o))


def loha_formed(arch: Arch, o: Any) -> int:
    """PEFT's LoHa forms (W1a W1b) and (W2a W2b), each d_out × d_in, for every adapted matrix, and autograd
    keeps both for the Hadamard product's backward: twice the adapted weights, per block. (Measured on
    SmolLM2-135M: LoHa's peak was 833 MB above LoRA's model, about 2 × its 106M adapted weights in fp32.)"""
    return 2 * sum(m.d_in * m.d_out for m in targeted(arch, o))


def check_targets(arch: Arch, o: Any, where: str) -> None:
    targeted(arch, o, where)  # unknown module names fail here (VeRA's rank may exceed the width)


def check_rank(arch: Arch, o: Any, where: str) -> None:
    targeted(arch, o, where)  # unknown module names fail here
    if o.r > arch.hidden:
        raise SpecError(
            f"{where} r: the rank {o.r} is larger than the hidden size {arch.hidden} of {arch.name}"
        )


def all_weights(arch: Arch, o: Any) -> int:
    return arch.params


def partial_trained(arch: Arch, o: Any) -> int:
    """The last blocks, and the output head: the LM head when output_head is set, a classifier always."""
    head = arch.head_params() if arch.classes else arch.vocab * arch.hidden if o.output_head else 0
    return o.blocks * arch.layer_params() + head


def partial_depth(arch: Arch, o: Any) -> int:
    """Blocks that keep activations: the trained ones, or all of them when a tied output head trains, since
    its matrix is also the input embedding and its gradient must come back through every block."""
    return arch.layers if o.output_head and arch.tied_head else o.blocks


def tied_embedding_grad(arch: Arch, o: Any = None) -> int:
    """A trained tied embedding gets two dense V × d gradients (the lookup's and the head's), then summed."""
    return arch.vocab * arch.hidden if arch.tied_head else 0


def partial_transient(arch: Arch, o: Any) -> int:
    return tied_embedding_grad(arch) if o.output_head else 0


def check_partial(arch: Arch, o: Any, where: str) -> None:
    require(o.blocks <= arch.layers, f"{where} blocks",
            f"{arch.name} has {arch.layers} blocks, cannot train the last {o.blocks}")  # fmt: skip


def adapter_params(arch: Arch, o: Any) -> int:
    m = max(1, arch.hidden // o.reduction)
    return arch.layers * ADAPTERS_PER_BLOCK[o.placement] * (2 * arch.hidden * m + m + arch.hidden)


def adapter_activations(arch: Arch, o: Any) -> int:
    """Each adapter keeps its input, its bottleneck before and after the nonlinearity."""
    return ADAPTERS_PER_BLOCK[o.placement] * (arch.hidden + 2 * max(1, arch.hidden // o.reduction))


def check_adapter(arch: Arch, o: Any, where: str) -> None:
    require(o.reduction <= arch.hidden, f"{where} reduction",
            f"{o.reduction} leaves no bottleneck for the hidden size {arch.hidden} of {arch.name}")  # fmt: skip


def ia3_params(arch: Arch, o: Any) -> int:
    """Keys, values and the feed-forward activation (PEFT's default targets for Llama-likes)."""
    return arch.layers * (2 * arch.kv_dim + arch.intermediate)


def ia3_activations(arch: Arch, o: Any) -> int:
    """The unscaled keys, values and feed-forward activation, kept for the vectors' gradients."""
    return 2 * arch.kv_dim + arch.intermediate


def prefix_params(arch: Arch, o: Any) -> int:
    return arch.layers * 2 * arch.kv_dim * o.virtual_tokens


def prompt_params(arch: Arch, o: Any) -> int:
    return arch.hidden * o.virtual_tokens


def virtual_tokens(arch: Arch, o: Any) -> int:
    return o.virtual_tokens


def probe_params(arch: Arch, o: Any) -> int:
    classes = arch.classes or 2
    return arch.hidden * classes + classes


def bias_params(arch: Arch, o: Any) -> int:
    """Every bias term (BitFit): the attention and feed-forward biases and the LayerNorm biases of each
    block, the embedding LayerNorm's, and a new classification head (weight and bias) when there is one."""
    per_block = 0
    if arch.attention_bias or arch.qkv_bias:
        per_block += arch.q_dim + 2 * arch.kv_dim + (arch.hidden if arch.attention_bias else 0)
    if arch.mlp_bias:
        per_block += arch.intermediate * (2 if arch.gated_mlp else 1) + arch.hidden
    if arch.layer_norm:
        per_block += arch.norms_per_layer * arch.hidden
    outer = arch.hidden if arch.layer_norm else 0
    return arch.layers * per_block + outer + (arch.head_params() if arch.classes else 0)


def largest_matrix(arch: Arch, o: Any) -> int:
    return max(m.d_in * m.d_out for m in arch.linears())
