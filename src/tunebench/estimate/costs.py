"""What each kind of method costs, as data: one table keyed by method name.

The estimator never asks a method's name; it asks its entry here what it trains (base weights, new
parameters), how deep gradients travel (how many blocks keep activations), whether the frozen base is
quantized, how many virtual tokens it adds, what transient buffer it needs and what its artifact holds.

Parameter counts follow the papers:
  LoRA (Hu et al., 2021): r · (d_in + d_out) per adapted matrix.
  DoRA (Liu et al., 2024): LoRA plus a magnitude vector of d_out per matrix; the merged weight W + BA is
    formed in the forward pass (one d_in × d_out buffer per adapted matrix at a time).
  (IA)³ (Liu et al., 2022): learned vectors rescaling keys, values and the feed-forward activation.
  QLoRA (Dettmers et al., 2023): LoRA on a frozen NF4 base; see `memory.nf4_bytes` for its constants.
  Adapters (Houlsby et al., 2019): two bottlenecks per block, d → d/reduction → d, with biases.
  Prefix tuning (Li & Liang, 2021): a key and a value vector per virtual token and block.
  Prompt tuning (Lester et al., 2021): one embedding per virtual token.
  Probe: a linear head on frozen features (C classes), fitted apart (no backward pass through the model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunebench.core.errors import SpecError, UnknownNameError, did_you_mean
from tunebench.core.typed import build, require
from tunebench.estimate.shapes import Arch, Linear

#: Module names users write (PEFT's, GPT-2's, BERT's) → the canonical names of `Arch.linears()`.
MODULE_ALIASES = {
    "q_proj": "q", "query": "q", "k_proj": "k", "key": "k", "v_proj": "v", "value": "v",
    "o_proj": "o", "out_proj": "o", "dense": "o", "gate_proj": "gate", "w1": "gate",
    "up_proj": "up", "fc1": "up", "c_fc": "up", "w3": "up", "down_proj": "down", "fc2": "down", "w2": "down",
}  # fmt: skip


ADAPTERS_PER_BLOCK = {"houlsby": 2, "pfeiffer": 1}


@dataclass
class NoOptions:
    """No options."""


@dataclass
class LowRankOptions:
    r: int = 16
    """Rank of the update."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Adapted matrices: all-linear, or names such as q,v (q_proj, v_proj … also accepted)."""

    def check(self, where: str) -> None:
        require(self.r >= 1, f"{where} r", f"the rank must be at least 1, got {self.r}")
        require(bool(self.target_modules), f"{where} target_modules", "name at least one module")


@dataclass
class QLoraOptions(LowRankOptions):
    double_quant: bool = True
    """Quantize the quantization constants too (QLoRA's double quantization)."""
    block: int = 64
    """Weights per absmax constant (QLoRA: 64)."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.block >= 1, f"{where} block", f"must be at least 1, got {self.block}")


@dataclass
class PartialOptions:
    blocks: int = 2
    """Trained blocks, counted from the top."""
    output_head: bool = True
    """Train the output head too (with tied embeddings, that is the embedding matrix)."""

    def check(self, where: str) -> None:
        require(self.blocks >= 1, f"{where} blocks", f"train at least one block, got {self.blocks}")


@dataclass
class AdapterOptions:
    placement: str = "houlsby"
    """houlsby (after attention and after the MLP: two per block) or pfeiffer (after the MLP: one)."""
    reduction: int = 16
    """Bottleneck width = hidden size / reduction."""

    def check(self, where: str) -> None:
        require(self.reduction >= 1, f"{where} reduction", f"must be at least 1, got {self.reduction}")
        require(self.placement in ADAPTERS_PER_BLOCK, f"{where} placement",
                f"expected houlsby or pfeiffer, got {self.placement!r}")  # fmt: skip


@dataclass
class VirtualTokenOptions:
    virtual_tokens: int = 20
    """Learned tokens put before every input."""

    def check(self, where: str) -> None:
        require(self.virtual_tokens >= 1, f"{where} virtual_tokens", f"at least 1, got {self.virtual_tokens}")


@dataclass
class ProbeOptions:
    labels: int = 2
    """Classes of the linear head."""

    def check(self, where: str) -> None:
        require(self.labels >= 2, f"{where} labels", f"at least 2 classes, got {self.labels}")


def _zero(arch: Arch, o: Any) -> int:
    return 0


@dataclass(frozen=True)
class MethodCost:
    """A method kind's costs, declared. Every callable takes (arch, options)."""

    summary: str
    Options: type = NoOptions
    trains: bool = True
    generates: bool = False
    """Answers by generation without training: its inference working set includes a KV cache."""
    base_trained: Callable[[Arch, Any], int] = _zero
    """Base-model weights that are trained (and so need gradients and optimizer states)."""
    added: Callable[[Arch, Any], int] = _zero
    """New parameters the method adds (all trained)."""
    backprop_layers: Callable[[Arch, Any], int] = lambda a, o: a.layers
    """Blocks, from the top, through which gradients flow and whose activations are kept."""
    quantized_base: bool = False
    """The frozen block matrices are stored in 4-bit NF4."""
    compute_bytes: int | None = None
    """The method fixes the width of the frozen unquantized weights and of the activations whatever the
    precision (QLoRA: NF4 storage, bf16 computation)."""
    extra_tokens: Callable[[Arch, Any], int] = _zero
    """Virtual tokens added to every sequence."""
    block_activations: Callable[[Arch, Any], int] = _zero
    """Values per token and block that the method's own modules keep for backward (LoRA: r per matrix)."""
    transient: Callable[[Arch, Any], int] = _zero
    """Elements of a temporary per-matrix buffer (DoRA's merged weight, QLoRA's dequantized weight)."""
    artifact: Callable[[Arch, Any], int] = lambda a, o: 0
    """Parameters the exported artifact stores (0: a prompt file of a few kilobytes)."""
    check: Callable[[Arch, Any, str], None] = lambda a, o, where: None
    """Settings that are impossible on this architecture (rank above the hidden size …)."""


# ---- the pieces each entry is made of -----------------------------------------------------------------


def targeted(arch: Arch, o: LowRankOptions, where: str = "--opt") -> list[Linear]:
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
                f"{where} target_modules: no module {t!r} in {arch.name}.{did_you_mean(t, [*names, *MODULE_ALIASES])} "
                f"Modules: {', '.join(names)} (or all-linear)"
            )
        chosen += [m for m in mods if m.name == name and m not in chosen]
    return chosen


def lora_params(arch: Arch, o: LowRankOptions) -> int:
    return arch.layers * sum(o.r * (m.d_in + m.d_out) for m in targeted(arch, o))


def lora_activations(arch: Arch, o: LowRankOptions) -> int:
    """A's output (r values) per adapted matrix; A's input is the matrix's input, already kept."""
    return o.r * len(targeted(arch, o))


def dora_activations(arch: Arch, o: LowRankOptions) -> int:
    """LoRA's, plus per adapted matrix its base output and LoRA output (kept for the magnitude's gradient)
    and a copy of its input: counted from the tensors PEFT 0.21's DoRA layer keeps alive after a forward."""
    mods = targeted(arch, o)
    return lora_activations(arch, o) + sum(2 * m.d_out + m.d_in for m in mods)


def dora_transient(arch: Arch, o: LowRankOptions) -> int:
    """PEFT forms B·A by passing an identity (d_in × d_in) through the adapter, then W + s·B·A and its norm:
    an identity and three d_out × d_in buffers for the largest adapted matrix."""
    return max(m.d_in * m.d_in + 3 * m.d_in * m.d_out for m in targeted(arch, o))


def dora_params(arch: Arch, o: LowRankOptions) -> int:
    return lora_params(arch, o) + arch.layers * sum(m.d_out for m in targeted(arch, o))


def check_rank(arch: Arch, o: LowRankOptions, where: str) -> None:
    targeted(arch, o, where)  # unknown module names fail here
    if o.r > arch.hidden:
        raise SpecError(
            f"{where} r: the rank {o.r} is larger than the hidden size {arch.hidden} of {arch.name}"
        )


def partial_trained(arch: Arch, o: PartialOptions) -> int:
    """The last blocks, and the output head: the LM head when output_head is set, a classifier always."""
    head = arch.head_params() if arch.classes else arch.vocab * arch.hidden if o.output_head else 0
    return o.blocks * arch.layer_params() + head


def partial_depth(arch: Arch, o: PartialOptions) -> int:
    """Blocks that keep activations: the trained ones, or all of them when a tied output head trains, since
    its matrix is also the input embedding and its gradient must come back through every block."""
    return arch.layers if o.output_head and arch.tied_head else o.blocks


def tied_embedding_grad(arch: Arch, o: Any = None) -> int:
    """A trained tied embedding gets two dense V × d gradients (the lookup's and the head's), then summed."""
    return arch.vocab * arch.hidden if arch.tied_head else 0


def partial_transient(arch: Arch, o: PartialOptions) -> int:
    return tied_embedding_grad(arch) if o.output_head else 0


def check_partial(arch: Arch, o: PartialOptions, where: str) -> None:
    require(o.blocks <= arch.layers, f"{where} blocks",
            f"{arch.name} has {arch.layers} blocks, cannot train the last {o.blocks}")  # fmt: skip


def adapter_params(arch: Arch, o: AdapterOptions) -> int:
    m = max(1, arch.hidden // o.reduction)
    return arch.layers * ADAPTERS_PER_BLOCK[o.placement] * (2 * arch.hidden * m + m + arch.hidden)


def adapter_activations(arch: Arch, o: AdapterOptions) -> int:
    """Each adapter keeps its input, its bottleneck before and after the nonlinearity."""
    return ADAPTERS_PER_BLOCK[o.placement] * (arch.hidden + 2 * max(1, arch.hidden // o.reduction))


def check_adapter(arch: Arch, o: AdapterOptions, where: str) -> None:
    require(o.reduction <= arch.hidden, f"{where} reduction",
            f"{o.reduction} leaves no bottleneck for the hidden size {arch.hidden} of {arch.name}")  # fmt: skip


def ia3_params(arch: Arch, o: Any) -> int:
    """Keys, values and the feed-forward activation (PEFT's default targets for Llama-likes)."""
    return arch.layers * (2 * arch.kv_dim + arch.intermediate)


def ia3_activations(arch: Arch, o: Any) -> int:
    """The unscaled keys, values and feed-forward activation, kept for the vectors' gradients."""
    return 2 * arch.kv_dim + arch.intermediate


def prefix_params(arch: Arch, o: VirtualTokenOptions) -> int:
    return arch.layers * 2 * arch.kv_dim * o.virtual_tokens


def prompt_params(arch: Arch, o: VirtualTokenOptions) -> int:
    return arch.hidden * o.virtual_tokens


def probe_params(arch: Arch, o: ProbeOptions) -> int:
    return arch.hidden * o.labels + o.labels


def largest_matrix(arch: Arch, o: Any) -> int:
    return max(m.d_in * m.d_out for m in arch.linears())


METHOD_COSTS: dict[str, MethodCost] = {
    "zero-shot": MethodCost("inference only: the weights, a KV cache and one block's working set", trains=False,
                            generates=True, backprop_layers=_zero),
    "few-shot": MethodCost("inference only; set --seq-len to the prompt with its shots", trains=False,
                           generates=True, backprop_layers=_zero),
    "logprob": MethodCost("inference only: one forward pass scoring each label's log-probability",
                          trains=False, backprop_layers=_zero),
    "probe": MethodCost("frozen features (inference) and a linear head fitted apart", Options=ProbeOptions,
                        trains=False, added=probe_params, backprop_layers=_zero, artifact=probe_params),
    "full": MethodCost("every weight trained", base_trained=lambda a, o: a.params, artifact=lambda a, o: a.params,
                       transient=tied_embedding_grad),
    "partial": MethodCost("the last k blocks and (by default) the output head trained",
                          Options=PartialOptions, base_trained=partial_trained,
                          backprop_layers=partial_depth, transient=partial_transient, artifact=partial_trained,
                          check=check_partial),
    "lora": MethodCost("rank-r updates B·A beside frozen weights", Options=LowRankOptions, added=lora_params,
                       artifact=lora_params, block_activations=lora_activations, check=check_rank),
    "dora": MethodCost("LoRA plus a learned magnitude per output; forms W + BA in the forward",
                       Options=LowRankOptions, added=dora_params, artifact=dora_params,
                       block_activations=dora_activations, transient=dora_transient, check=check_rank),
    "qlora": MethodCost("LoRA on a 4-bit NF4 base with double-quantized constants", Options=QLoraOptions,
                        added=lora_params, artifact=lora_params, quantized_base=True, compute_bytes=2,
                        block_activations=lora_activations, transient=largest_matrix, check=check_rank),
    "ia3": MethodCost("learned rescaling vectors on keys, values and the MLP activation", added=ia3_params,
                      artifact=ia3_params, block_activations=ia3_activations),
    "adapter": MethodCost("bottleneck adapters inside every block", Options=AdapterOptions,
                          added=adapter_params, artifact=adapter_params, block_activations=adapter_activations,
                          check=check_adapter),
    "prefix": MethodCost("learned key/value prefixes at every block", Options=VirtualTokenOptions,
                         added=prefix_params, artifact=prefix_params),
    "prompt": MethodCost("a learned soft prompt before the input", Options=VirtualTokenOptions,
                         added=prompt_params, artifact=prompt_params, extra_tokens=lambda a, o: o.virtual_tokens),
}  # fmt: skip


def method_cost(name: str, *, flag: str = "--method") -> MethodCost:
    if name not in METHOD_COSTS:
        raise UnknownNameError(
            f"{flag} {name!r}: no cost model.{did_you_mean(name, METHOD_COSTS)} "
            f"Known methods: {', '.join(METHOD_COSTS)}"
        )
    return METHOD_COSTS[name]


def method_options(name: str, values: dict[str, Any] | None, *, where: str = "--opt") -> Any:
    """The method's options from KEY=VALUE pairs, checked (unknown keys name the close match)."""
    return build(method_cost(name).Options, values or {}, f"{where} ({name})")
