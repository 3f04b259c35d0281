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
  GaLore (Zhao et al., 2024): every weight trained; Adam's moments of each block matrix are those of its
    gradient projected to rank r, plus one projection matrix per block matrix (`_galore_shapes`).
  LoKr (Yeh et al., 2024): W1 ⊗ W2 per adapted matrix, each factor full or rank-r, with PEFT's factorization
    of d_in and d_out and its rules for when a factor is decomposed (`lokr_matrix_params`).
  OFT (Qiu et al., 2023): d_in / b orthogonal blocks of b × b per adapted matrix, each from b(b-1)/2
    skew-symmetric entries (one block shared with block_share).
  BOFT (Liu et al., 2024): m butterfly factors of d_in / b blocks, stored as full b × b matrices, and a
    scale of d_out; PEFT also keeps m dense d_in × d_in permutation matrices per adapted matrix (`buffers`).
  AdaLoRA (Zhang et al., 2023): an SVD-form update P Λ Q of init_r per adapted matrix, init_r(d_in + d_out + 1),
    plus one frozen current-rank value per matrix; pruning zeroes Λ entries, the tensors keep their size.
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
    extra_tokens: Callable[[Arch, Any], int] = zero
    """Virtual tokens added to every sequence."""
    block_activations: Callable[[Arch, Any], int] = zero
    """Values per token and block that the method's own modules keep for backward (LoRA: r per matrix)."""
    transient: Callable[[Arch, Any], int] = zero
    """Elements of a temporary per-matrix buffer (DoRA's merged weight, QLoRA's dequantized weight)."""
    optimizer_states: Callable[[Arch, Any], int] | None = None
    """Values in each of the optimizer's per-weight states (Adam has two: its moments) when not one per
    trained weight (None): GaLore keeps them for the block matrices' projected gradients, rank × a side."""
    optimizer_extra: Callable[[Arch, Any], int] = zero
    """Further values the optimizer keeps, at its states' width (GaLore's projection matrices)."""
    formed_per_block: Callable[[Arch, Any], int] = zero
    """Elements the method forms from its weights in each block's forward and keeps for the backward pass,
    whatever the batch (LoHa's two full-size factor products per adapted matrix)."""
    frozen_added: Callable[[Arch, Any], int] = zero
    """New parameters the method adds that do not train (AdaLoRA's current rank, one per adapted matrix):
    in the model's total and its weights, not in the trainable count."""
    buffers: Callable[[Arch, Any], int] = zero
    """fp32 elements the method keeps for the whole run outside its parameters (BOFT's permutation
    matrices, AdaLoRA's three sensitivity statistics per trained value)."""
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


def lokr_factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """PEFT's `lokr.layer.factorization`: dimension = m · n with m ≤ n, m = `factor` when it divides the
    dimension, else the pair nearest √dimension (with m ≤ factor when a factor is given)."""
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    if factor == -1:
        factor = dimension
    m, n = 1, dimension
    while m < n:
        new_m = m + 1
        while dimension % new_m != 0:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > m + n or new_m > factor:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def lokr_matrix_params(d_in: int, d_out: int, o: Any) -> int:
    """One adapted matrix: ΔW = W1 ⊗ W2 with W1 (out_l × in_m) and W2 (out_k × in_n), d_out = out_l · out_k
    and d_in = in_m · in_n. As PEFT 0.21 decides: W1 is full unless decompose_both and r < max(W1's
    sides) / 2 (then rank r), W2 is rank r when r < max(W2's sides) / 2, else full."""
    in_m, in_n = lokr_factorization(d_in, o.decompose_factor)
    out_l, out_k = lokr_factorization(d_out, o.decompose_factor)
    use_w1 = not (o.decompose_both and o.r < max(out_l, in_m) / 2)
    use_w2 = not (o.r < max(out_k, in_n) / 2)
    w1 = out_l * in_m if use_w1 else o.r * (out_l + in_m)
    w2 = out_k * in_n if use_w2 else o.r * (out_k + in_n)
    return w1 + w2


def lokr_params(arch: Arch, o: Any) -> int:
    return arch.layers * sum(lokr_matrix_params(m.d_in, m.d_out, o) for m in targeted(arch, o))


def lokr_formed(arch: Arch, o: Any) -> int:
    """PEFT's LoKr forms W1 ⊗ W2 (d_out × d_in) for every adapted matrix and F.linear keeps it for the
    input's gradient: once the adapted weights, per block (saved-tensor hooks on a Llama block, PEFT 0.21)."""
    return sum(m.d_in * m.d_out for m in targeted(arch, o))


def oft_params(arch: Arch, o: Any) -> int:
    """OFT: per adapted matrix d_in / b blocks (one with block_share) of b(b-1)/2 skew-symmetric entries."""
    b = o.block_size
    return arch.layers * sum(
        (1 if o.block_share else m.d_in // b) * (b * (b - 1) // 2) for m in targeted(arch, o)
    )


def oft_formed(arch: Arch, o: Any) -> int:
    """PEFT forms each rotation by the Cayley–Neumann series and autograd keeps the skew matrices, their
    square, their cube and the sum: 4 · (d_in / b) · b² = 4 · d_in · b per adapted matrix (measured with
    saved-tensor hooks on a Llama block, PEFT 0.21); the rotated input is not kept (the base is frozen)."""
    return sum(4 * m.d_in * o.block_size for m in targeted(arch, o))


def check_blocks(arch: Arch, o: Any, where: str) -> None:
    """OFT and BOFT split each adapted matrix's input into blocks: the block size must divide every
    input width (PEFT silently changes OFT's block size otherwise, and refuses BOFT's)."""
    mods = targeted(arch, o, where)
    step = o.block_size * 2 ** (getattr(o, "butterfly_factor", 1) - 1)
    widths = sorted({m.d_in for m in mods})
    bad = [w for w in widths if w % step]
    if bad:
        common = [b for b in range(1, min(widths) + 1) if all(w % b == 0 for w in widths)]
        need = "block_size" + (" × 2^(butterfly_factor - 1)" if step != o.block_size else "")
        raise SpecError(
            f"{where} block_size: {need} = {step} does not divide the input width"
            f"{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))} of {arch.name}'s adapted matrices "
            f"(widths {', '.join(map(str, widths))}); block sizes that divide them all: "
            f"{', '.join(map(str, common))}"
        )
    if getattr(o, "butterfly_factor", 1) > 1:
        require(o.block_size % 2 == 0, f"{where} block_size",
                f"BOFT with butterfly_factor > 1 needs an even block size, got {o.block_size}")  # fmt: skip


def boft_params(arch: Arch, o: Any) -> int:
    """BOFT: m butterfly factors of d_in / b full b × b blocks (PEFT keeps the whole block; the rotation
    uses its skew part) and a scale vector of d_out, per adapted matrix: m · d_in · b + d_out."""
    return arch.layers * sum(o.butterfly_factor * m.d_in * o.block_size + m.d_out for m in targeted(arch, o))


def boft_buffers(arch: Arch, o: Any) -> int:
    """PEFT registers m dense d_in × d_in butterfly permutation matrices per adapted matrix (`boft_P`), in
    every block: at 7B with all-linear targets, about 28 GB per butterfly factor."""
    return arch.layers * sum(o.butterfly_factor * m.d_in * m.d_in for m in targeted(arch, o))


def boft_activations(arch: Arch, o: Any) -> int:
    """The base layer's output, kept for the scale's gradient: d_out per adapted matrix."""
    return sum(m.d_out for m in targeted(arch, o))


def boft_formed(arch: Arch, o: Any) -> int:
    """Per adapted matrix PEFT forms the block-diagonal rotation, its product with the permutations and the
    composed d_in × d_in rotation, and keeps them for backward: 3 · d_in² at m = 1 (measured with
    saved-tensor hooks on a Llama block, PEFT 0.21), each further factor adding its block-diagonal matrix
    and product (2 · d_in²); plus the Cayley terms, 4 · m · d_in · b."""
    m_ = o.butterfly_factor
    return sum((2 * m_ + 1) * m.d_in**2 + 4 * m_ * m.d_in * o.block_size for m in targeted(arch, o))


def adalora_params(arch: Arch, o: Any) -> int:
    """AdaLoRA: P (d_out × init_r), Λ (init_r) and Q (init_r × d_in) per adapted matrix, all trained."""
    return arch.layers * sum(o.init_r * (m.d_in + m.d_out + 1) for m in targeted(arch, o))


def adalora_ranknum(arch: Arch, o: Any) -> int:
    """One frozen parameter per adapted matrix holding its rank (PEFT's `ranknum`: the update's scale
    divides by it)."""
    return arch.layers * len(targeted(arch, o))


def adalora_buffers(arch: Arch, o: Any) -> int:
    """The rank allocator's sensitivity, its smoothed average and its uncertainty: three values per trained
    value (PEFT's RankAllocator), kept until the final phase."""
    return 3 * adalora_params(arch, o)


def adalora_activations(arch: Arch, o: Any) -> int:
    """Q·x (init_r values) per adapted matrix, as LoRA's A·x."""
    return o.init_r * len(targeted(arch, o))


def check_adalora(arch: Arch, o: Any, where: str) -> None:
    targeted(arch, o, where)  # unknown module names fail here
    if o.init_r > arch.hidden:
        raise SpecError(
            f"{where} init_r: the rank {o.init_r} is larger than the hidden size {arch.hidden} of {arch.name}"
        )


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
    """The last blocks, a decoder's final norm, and the output head: the LM head when output_head is set, a
    classifier always. With select: snr, `blocks` matrices of each kind with their biases (the same matrix
    weights as `blocks` whole blocks, since a kind has one shape in every block) and none of the blocks'
    norms; the final norm trains in both (models/blocks.py `final_norm`; BERT-style encoders have none)."""
    head = arch.head_params() if arch.classes else arch.vocab * arch.hidden if o.output_head else 0
    norms = arch.norms_per_layer * arch.norm_params() + (2 * arch.head_dim if arch.qk_norm else 0)
    per_block = arch.layer_params() - (norms if o.select == "snr" else 0)
    final = arch.norm_params() if arch.kind == "decoder" else 0
    return o.blocks * per_block + final + head


def partial_depth(arch: Arch, o: Any) -> int:
    """Blocks that keep activations: the trained ones, or all of them when a tied output head trains, since
    its matrix is also the input embedding and its gradient must come back through every block. With
    select: snr the chosen matrices depend on the weights, and Spectrum's choices reach the first blocks
    (Llama-3.1-8B's down projections of blocks 0 and 1 in its published 50% selection): every block."""
    return arch.layers if (o.output_head and arch.tied_head) or o.select == "snr" else o.blocks


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


def _galore_shapes(m: Linear, o: Any) -> tuple[int, int]:
    """(elements of one Adam moment, elements of the projection) for one block matrix under GaLore, as
    galore-torch 1.0's GaLoreProjector forms them for a weight of d_out × d_in: the gradient is projected
    onto the top-`rank` singular vectors of one side (at most the matrix's smaller side), and the moments
    are kept for the projected gradient. `std` projects the smaller side, so the moments are rank × the
    larger side and the projection rank × the smaller one; `reverse_std` the other way round; `right` and
    `left` fix the side; `full` projects both (moments rank × rank)."""
    rows, cols = m.d_out, m.d_in
    r = min(o.rank, rows, cols)
    right = (r * rows, r * cols)  # G·Qᵀ: (rows × r) moments, Q: r × cols
    left = (r * cols, r * rows)  # Pᵀ·G: (r × cols) moments, P: rows × r
    if o.proj_type == "full":
        return r * r, r * (rows + cols)
    if o.proj_type == "std":
        return right if rows >= cols else left
    if o.proj_type == "reverse_std":
        return left if rows >= cols else right
    return right if o.proj_type == "right" else left


def galore_states(arch: Arch, o: Any) -> int:
    """Values in each Adam moment under GaLore: the projected gradients of the block matrices, and one per
    weight for everything else (embeddings, norms, biases, a classification head)."""
    projected = arch.layers * sum(_galore_shapes(m, o)[0] for m in arch.linears())
    return arch.params - arch.linear_params + projected


def check_galore(arch: Arch, o: Any, where: str) -> None:
    """galore-torch cannot use reverse_std at a rank that reaches a block matrix's smaller side."""
    narrowest = min(min(m.d_in, m.d_out) for m in arch.linears())
    require(o.proj_type != "reverse_std" or o.rank < narrowest, f"{where} rank",
            f"with proj_type reverse_std it must be below the smallest block-matrix side of {arch.name}, "
            f"{narrowest} (galore-torch cannot project back at that rank); or use proj_type std")  # fmt: skip


def galore_projections(arch: Arch, o: Any) -> int:
    """GaLore's projection matrices, one per block matrix."""
    return arch.layers * sum(_galore_shapes(m, o)[1] for m in arch.linears())


def largest_matrix(arch: Arch, o: Any) -> int:
    return max(m.d_in * m.d_out for m in arch.linears())
