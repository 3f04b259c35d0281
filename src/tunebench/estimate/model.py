"""The cost model: peak training memory by component, FLOPs per token, time on a device, and whether it fits.

Memory (bytes) is the sum of what lives at once during a training step:

  weights        frozen weights at the precision's storage width (NF4 for QLoRA's block matrices), trained
                 weights at their working width;
  buffers        what a method keeps outside its parameters for the whole run, in fp32 (BOFT's permutation
                 matrices, AdaLoRA's sensitivity statistics);
  quantization   NF4 absmax constants: 32/64 bits per weight, or 8/64 + 32/(64·256) = 0.127 bits with
                 double quantization (Dettmers et al., 2023, §3);
  gradients      one per trained weight;
  optimizer      fp32 master copy where the precision keeps one, plus Adam's two moments (of the projected
                 gradients under GaLore, which also keeps its projection matrices);
  activations    tensors kept for the backward pass, counted from what PyTorch's autograd saves in a
                 Hugging Face Llama block (measured with saved-tensor hooks, see `layer_elements`), or
                 with gradient checkpointing the block inputs plus one block recomputed;
  logits         the output projection's logits and cross-entropy buffers (B·T·V at 12 bytes a value);
  allocator      freed temporaries the allocator keeps resident, as the device's measured multiple of a
                 step's activations and logits (none on a GPU, whose allocator counters see live tensors;
                 none on logits buffers too large for glibc to keep, which it unmaps when freed);
  overhead       the runtime before any tensor (CUDA context; the Python process on a CPU).

The peak is the usual sum (EleutherAI's "Transformer Math 101"; ZeRO, Rajbhandari et al., 2020) with one
refinement: gradients and a step's activations do not coexist in full, since the backward pass frees each
block's activations as it creates that block's gradients (with gradients set to None between steps), so
the step contributes the larger of the two; with gradient accumulation the gradients outlive the
micro-batch and both count. calibrate.py measures how far this lands from tunebench's measured peaks.

FLOPs per token follow Kaplan et al. (2020): 2 per weight in the forward pass plus attention's
2·layers·context·d_attn; the backward pass costs 2 per weight for the activation gradients of every block
gradients travel through and 2 per trained weight for the weight gradients (6N for full fine-tuning, about
4N for LoRA); gradient checkpointing adds one more forward pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tunebench.core.errors import SpecError, did_you_mean
from tunebench.core.typed import require
from tunebench.estimate.costs import MethodCost, method_cost, method_options
from tunebench.estimate.devices import Device
from tunebench.methods.cost import NF4_BLOCK
from tunebench.models.arch import Arch

GIB = 2**30


@dataclass(frozen=True)
class Precision:
    """Bytes per value of each kind of tensor."""

    summary: str
    frozen: int
    trained: int
    """The working copy of a trained weight."""
    grad: int
    master: int
    """An fp32 master copy of each trained weight (0: the working copy is the master)."""
    state: int
    """Each optimizer state value (Adam keeps two per weight)."""
    act: int
    sixteen_bit: bool
    """Matrix products run on the 16-bit tensor cores (else at the fp32 peak)."""


PRECISIONS: dict[str, Precision] = {
    "mixed": Precision("bf16 weights, gradients and activations; fp32 master weights and Adam moments "
                       "(16 bytes per trained weight, ZeRO's accounting)", 2, 2, 2, 4, 4, 2, True),
    "bf16-adam32": Precision("16-bit weights and gradients, fp32 Adam moments, no master copy (12 bytes per "
                             "trained weight: QLoRA paper's '16-bit fine-tuning')", 2, 2, 2, 0, 4, 2, True),
    "bf16": Precision("everything in 16 bits, Adam moments too (torch's AdamW on a bf16 model; 8 bytes per "
                      "trained weight)", 2, 2, 2, 0, 2, 2, True),
    "fp32": Precision("everything in fp32 (tunebench on a CPU without bf16 matrix units; 16 bytes per "
                      "trained weight)", 4, 4, 4, 0, 4, 4, False),
}  # fmt: skip

#: Optimizer states per trained weight, and their width when the optimizer fixes it (8-bit Adam).
OPTIMIZERS: dict[str, tuple[int, int | None]] = {"adamw": (2, None), "adamw-8bit": (2, 1), "sgd": (0, None)}


@dataclass
class Setting:
    """How the model is trained: the knobs of `tunebench estimate`."""

    seq_len: int = 512
    """Tokens per sequence."""
    batch: int = 8
    """Sequences per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; above 1, gradients live through the next micro-batch's activations."""
    tokens: float = 1e8
    """Training tokens, for the time estimate (tokens processed, for inference-only methods)."""
    precision: str = "mixed"
    optimizer: str = "adamw"
    mfu: float = 0.4
    """Model FLOPs utilisation: the fraction of the device's peak that training achieves."""
    logit_positions: int | None = None
    """Positions per sequence where logits are computed (None: all; tunebench's loss: the targets only)."""

    def check(self, where: str = "") -> None:
        pre = f"{where} " if where else ""
        require(self.seq_len >= 1, f"{pre}--seq-len", f"must be at least 1, got {self.seq_len}")
        require(self.batch >= 1, f"{pre}--batch", f"must be at least 1, got {self.batch}")
        require(self.grad_accum >= 1, f"{pre}--grad-accum", f"must be at least 1, got {self.grad_accum}")
        require(self.tokens > 0, f"{pre}--tokens", f"must be positive, got {self.tokens}")
        require(0 < self.mfu <= 1, f"{pre}--mfu", f"a fraction in (0, 1], got {self.mfu}")
        for flag, value, table in (
            ("--precision", self.precision, PRECISIONS),
            ("--optimizer", self.optimizer, OPTIMIZERS),
        ):
            if value not in table:
                raise SpecError(
                    f"{pre}{flag}: unknown {value!r}.{did_you_mean(value, table)} Known: {', '.join(table)}"
                )


@dataclass
class Estimate:
    model: str
    method: str
    device: str
    params: int
    trainable: int
    memory: dict[str, int]
    """Component → bytes; `activations` and `allocator` without, `activations_ckpt` and `allocator_ckpt` with
    gradient checkpointing."""
    peak: int
    peak_ckpt: int
    device_bytes: int
    artifact_bytes: int
    flops_per_token: float
    flops_per_token_ckpt: float
    seconds: float | None
    """Time for `setting.tokens` tokens (None when the device's throughput is unknown)."""
    seconds_ckpt: float | None
    trains: bool
    setting: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return self.peak <= self.device_bytes

    @property
    def fits_ckpt(self) -> bool:
        return self.peak_ckpt <= self.device_bytes

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            fits=self.fits,
            fits_ckpt=self.fits_ckpt,
            trainable_pct=100.0 * self.trainable / self.params if self.params else 0.0,
        )
        return out


def layer_elements(arch: Arch, weights_trained: bool, method_terms: int = 0) -> int:
    """Values autograd keeps per token for one block (counted from a Hugging Face Llama block in fp32).

    Each norm keeps its input, the normalised value fed to the next matrix and, when its weight trains,
    the pre-scale product (3d, else 2d); attention keeps q, k, v and its output (flash/SDPA keeps no T×T
    scores); the MLP keeps gate, up, act(gate) and their product (4·ff), or up and act(up) (2·ff).
    """
    norms = arch.norms_per_layer * arch.hidden * (3 if weights_trained else 2)
    attention = 2 * arch.q_dim + 2 * arch.kv_dim + arch.heads
    mlp = (4 if arch.gated_mlp else 2) * arch.intermediate
    return norms + attention + mlp + method_terms


def nf4_bytes(params: int, block: int, double_quant: bool) -> tuple[int, int]:
    """(4-bit codes, quantization constants) for `params` weights quantized in blocks of `block`."""
    codes = params // 2
    blocks = params / block
    constants = blocks * 1 + blocks / 256 * 4 if double_quant else blocks * 4
    return codes, int(constants)


def estimate(
    arch: Arch,
    method: str,
    device: Device,
    setting: Setting | None = None,
    options: dict[str, Any] | Any = None,
) -> Estimate:
    """The cost of training `arch` with `method` under `setting` on `device`."""
    setting = setting or Setting()
    setting.check()
    cost = method_cost(method)
    # the method's own options dataclass: typed Any, as everywhere options are handled by name
    opts: Any = options if isinstance(options, cost.Options) else method_options(method, options)
    cost.declared.check(arch, opts, f"--opt ({method})")
    p = PRECISIONS[setting.precision]
    base_trained, added = cost.declared.base_trained(arch, opts), cost.declared.added(arch, opts)
    trainable = base_trained + added
    mem = _memory(arch, cost, opts, setting, device, p, base_trained, added)
    fpt, fpt_ckpt = _flops_per_token(arch, cost, opts, setting, base_trained, added)
    peak_tflops = device.tflops(p.sixteen_bit)
    throughput = peak_tflops * 1e12 * setting.mfu if peak_tflops else None
    return Estimate(
        model=arch.name,
        method=method,
        device=device.name,
        params=arch.params + added + cost.declared.frozen_added(arch, opts),
        trainable=trainable,
        memory=mem,
        peak=_peak(mem, setting.grad_accum, checkpointed=False),
        peak_ckpt=_peak(mem, setting.grad_accum, checkpointed=True),
        device_bytes=int(device.memory_gib * GIB),
        artifact_bytes=cost.declared.artifact(arch, opts) * (p.trained if cost.trains else 4),
        flops_per_token=fpt,
        flops_per_token_ckpt=fpt_ckpt,
        seconds=setting.tokens * fpt / throughput if throughput else None,
        seconds_ckpt=setting.tokens * fpt_ckpt / throughput if throughput else None,
        trains=cost.trains,
        setting=asdict(setting),
        options=asdict(opts),
    )


def _memory(
    arch: Arch,
    cost: MethodCost,
    opts: Any,
    setting: Setting,
    device: Device,
    p: Precision,
    base_trained: int,
    added: int,
) -> dict[str, int]:
    """Every component in bytes (see the module docstring)."""
    trainable = base_trained + added
    n_states, state_width = OPTIMIZERS[setting.optimizer]
    mem = _weights(arch, cost, opts, p, base_trained, added)
    mem["weights"] += cost.declared.frozen_added(arch, opts) * p.frozen
    mem["buffers"] = cost.declared.buffers(arch, opts) * 4
    mem["gradients"] = trainable * p.grad if cost.trains else 0
    # Adam's moments hold one value per trained weight, unless the method's optimizer keeps them smaller
    # (GaLore: for the projected gradients) and keeps more besides (its projection matrices).
    declared_states = cost.declared.optimizer_states
    states = declared_states(arch, opts) if declared_states is not None else trainable
    extra = cost.declared.optimizer_extra(arch, opts) * p.state
    mem["optimizer"] = (
        trainable * p.master + states * n_states * (state_width or p.state) + extra if cost.trains else 0
    )
    acts, acts_ckpt, logits = _activations(arch, cost, opts, setting, p, base_trained > 0)
    mem.update(activations=acts, activations_ckpt=acts_ckpt, logits=logits)
    # glibc serves a block above its largest mmap threshold with mmap and unmaps it when freed: logits of
    # that size (one fp32 B·T·V buffer) leave nothing behind, so no slack on them (prompt tuning's logits
    # over its virtual tokens: 55 MB a buffer at batch 8, estimated 24% high with the slack on them).
    kept_logits = logits if _logit_buffer(arch, setting, cost, opts) < MMAP_THRESHOLD_MAX else 0
    mem["allocator"] = int((device.dynamic_slack - 1) * (acts + kept_logits))
    mem["allocator_ckpt"] = int((device.dynamic_slack - 1) * (acts_ckpt + kept_logits))
    # Weight-sized tensors a method forms per block and keeps for backward (LoHa's products): large
    # allocations, which the allocator returns at once, so no slack on them.
    formed = cost.declared.formed_per_block(arch, opts) * p.act if cost.trains else 0
    mem["formed"] = cost.declared.backprop_layers(arch, opts) * formed
    mem["formed_ckpt"] = formed
    mem["overhead"] = int(device.overhead_gib * GIB)
    return mem


_PER_STEP = (
    "gradients",
    "activations",
    "activations_ckpt",
    "logits",
    "allocator",
    "allocator_ckpt",
    "formed",
    "formed_ckpt",
)


def _peak(mem: dict[str, int], grad_accum: int, *, checkpointed: bool) -> int:
    """Weights, optimizer states and overhead, plus the larger of the gradients and the step's activations,
    logits and slack: backward frees activations as it creates gradients, unless gradients accumulate."""
    static = sum(v for k, v in mem.items() if k not in _PER_STEP)
    suffix = "_ckpt" if checkpointed else ""
    dynamic = mem["activations" + suffix] + mem["logits"] + mem["allocator" + suffix] + mem["formed" + suffix]
    if grad_accum > 1:
        return static + mem["gradients"] + dynamic
    return static + max(mem["gradients"], dynamic)


def _weights(
    arch: Arch, cost: MethodCost, opts: Any, p: Precision, base_trained: int, added: int
) -> dict[str, int]:
    frozen = arch.params - base_trained
    if not cost.declared.quantized_base:
        return {"weights": frozen * p.frozen + (base_trained + added) * p.trained, "quantization": 0}
    codes, constants = nf4_bytes(arch.linear_params, NF4_BLOCK, opts.double_quant)
    unquantized = frozen - arch.linear_params  # embeddings, norms, head stay 16-bit
    return {"weights": codes + unquantized * p.frozen + added * p.trained, "quantization": constants}


#: glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems: larger allocations are always mmapped.
MMAP_THRESHOLD_MAX = 32 * 2**20


def _logit_positions(arch: Arch, s: Setting, cost: MethodCost, opts: Any) -> int:
    """Positions whose logits a training step computes: the targets alone under tunebench's loss, else
    every position of the sequence (with the method's extra tokens); none for an encoder."""
    seq = s.seq_len + cost.declared.extra_tokens(arch, opts)
    return s.batch * (s.logit_positions or seq) if arch.kind == "decoder" else 0


def _logit_buffer(arch: Arch, s: Setting, cost: MethodCost, opts: Any) -> int:
    """Bytes of one fp32 logits buffer (B·T·V): the size the allocator sees per allocation."""
    return _logit_positions(arch, s, cost, opts) * arch.outputs * 4


def _activations(
    arch: Arch, cost: MethodCost, opts: Any, s: Setting, p: Precision, weights_trained: bool
) -> tuple[int, int, int]:
    """(activations, activations with checkpointing, logits) in bytes."""
    seq = s.seq_len + cost.declared.extra_tokens(arch, opts)
    tokens = s.batch * seq
    own = cost.declared.block_activations(arch, opts)
    per_layer = layer_elements(arch, weights_trained, own) * tokens * p.act
    transient = cost.declared.transient(arch, opts) * p.act
    layers = cost.declared.backprop_layers(arch, opts)
    if layers == 0:  # inference: one block's working set, and a KV cache where the method generates
        kv = (
            2 * arch.layers * arch.kv_dim * tokens * p.act
            if cost.declared.generates and arch.kind == "decoder"
            else 0
        )
        return per_layer + kv, per_layer + kv, 0
    outer = 3 * arch.hidden * tokens * p.act  # final norm and the head's input
    logits = _logit_positions(arch, s, cost, opts) * arch.outputs * (12 + (p.act if p.act < 4 else 0))
    full = layers * per_layer + outer + transient
    ckpt = layers * arch.hidden * tokens * p.act + per_layer + outer + transient
    return full, ckpt, logits


def _flops_per_token(
    arch: Arch, cost: MethodCost, opts: Any, s: Setting, base_trained: int, added: int
) -> tuple[float, float]:
    """(FLOPs per token, with checkpointing): forward, backward through the kept blocks, weight gradients."""
    seq = s.seq_len + cost.declared.extra_tokens(arch, opts)
    head = arch.outputs * arch.hidden if arch.kind == "decoder" or arch.classes else 0
    attention = 2 * seq * arch.q_dim  # per block: QKᵀ and A·V (Kaplan's 2·n_ctx·d_attn)
    block = 2 * arch.layer_linear_params() + attention
    forward = arch.layers * block + 2 * head + 2 * added
    if not cost.trains:
        return float(forward), float(forward)
    layers = cost.declared.backprop_layers(arch, opts)
    if layers == 0:  # a head on frozen features: the forward pass dominates
        return float(forward), float(forward)
    backward = layers * block + 2 * head + 2 * base_trained + 4 * added
    return float(forward + backward), float(forward + backward + layers * block)
