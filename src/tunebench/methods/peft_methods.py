"""The methods PEFT implements: LoRA, DoRA, IA3, QLoRA, prefix and prompt tuning, VeRA, LoHa, LoKr, AdaLoRA.

Each is a PEFT config built from the method's options; wrapping, saving (PEFT format, loadable by PEFT
and by `tunebench serve`) and loading are shared in `PeftMethod`. A new classification head is kept
trainable through PEFT's `modules_to_save`.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file

from tunebench.core.errors import UnsupportedError, did_you_mean
from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context, Recipe
from tunebench.methods.cost import (
    Cost,
    adalora_activations,
    adalora_buffers,
    adalora_params,
    adalora_ranknum,
    check_adalora,
    check_rank,
    check_targets,
    dora_activations,
    dora_params,
    dora_transient,
    ia3_activations,
    ia3_params,
    largest_matrix,
    loha_formed,
    loha_params,
    lokr_formed,
    lokr_params,
    lora_activations,
    lora_params,
    prefix_params,
    prompt_params,
    vera_params,
    virtual_tokens,
)
from tunebench.methods.tuning import ModelMethod, ModelOptions
from tunebench.models.arch import Arch
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks.base import Task
from tunebench.train.data import batch_stream
from tunebench.train.loop import TrainHook, TrainStats, total_steps
from tunebench.train.memory import release_memory


class PeftMethod(ModelMethod):
    access = "white box"
    trains = True

    def peft_config(self, ctx: Context) -> Any:
        raise NotImplementedError

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        from peft import get_peft_model  # lazy: slow import

        return get_peft_model(model, self.peft_config(ctx))

    #: The trained update folds into the base weights (`merge_and_unload`): W + ΔW, one matrix a layer.
    mergeable: ClassVar[bool] = False

    def merge(self) -> bool:
        if not self.mergeable:
            return False
        self.model = self.model.merge_and_unload()
        return True

    def targets(self) -> str | list[str]:
        """The options' target_modules as PEFT takes them ('all-linear' is a string, not a list)."""
        modules = self.options.target_modules
        return modules[0] if modules == ["all-linear"] else modules

    def common(self) -> dict[str, Any]:
        """Arguments every PEFT config takes: the model kind and the new head to keep trainable."""
        # A copy: PEFT appends its own defaults to the list it is given.
        return {"task_type": self.head.peft_task_type, "modules_to_save": list(self.head_modules) or None}

    def export(self, folder: Path) -> None:
        self.model.save_pretrained(folder)  # adapter_config.json + adapter_model.safetensors

    def load_artifact(self, folder: Path) -> None:
        from peft import set_peft_model_state_dict  # lazy: slow import

        # PEFT matches names itself (and loads virtual-token embeddings into its own prompt encoder).
        set_peft_model_state_dict(self.model, load_file(str(folder / "adapter_model.safetensors")))


#: LoRA's initializations: the `init` option → PEFT 0.21's `init_lora_weights`, each with its source.
#:   default   A Kaiming-uniform, B zero (Hu et al., 2021, "LoRA"; the Microsoft reference, PEFT's True).
#:   gaussian  A Gaussian scaled by the rank, B zero (PEFT's "gaussian").
#:   pissa     Meng et al., 2024, "PiSSA: Principal Singular Values and Singular Vectors Adaptation": A and B
#:             from the top-r singular triplets of W, W replaced by the residual. PEFT's fast variant with 16
#:             subspace iterations of randomized SVD, which PEFT's LoraConfig documents as initializing a 7B
#:             model in seconds with about the full SVD's training effect (the full SVD of every matrix takes
#:             minutes at that size); drawn from the run's seed like every other init.
#:   olora     Büyükakyüz, 2024, "OLoRA: Orthonormal Low-Rank Adaptation": B and A from the QR decomposition
#:             of W (the first r columns of Q, rows of R), W replaced by the residual.
#:   loftq     Li et al., 2024, "LoftQ: LoRA-Fine-Tuning-aware Quantization": W replaced by its NF4-quantized
#:             and dequantized version Q, B·A from the SVD of W − Q (PEFT's LoftQConfig defaults: 4 bits, one
#:             alternating step).
#:   eva       Paischer et al., 2024, "One Initialization to Rule them All: Fine-tuning via Explained Variance
#:             Adaptation": A from the top right-singular vectors of each adapted layer's inputs on the
#:             training split, B zero, ranks moved between layers by explained variance (PEFT's EvaConfig
#:             defaults: rho 2, so a layer takes at most 2r; tau 0.99).
#: Values are Any: PEFT types `init_lora_weights` as a Literal that has no "pissa_niter_16".
LORA_INITS: dict[str, Any] = {
    "default": True,
    "gaussian": "gaussian",
    "pissa": "pissa_niter_16",
    "olora": "olora",
    "loftq": "loftq",
    "eva": "eva",
}
#: Inits that rewrite the frozen base weights: the adapted model's W is no longer the base model's.
REWRITES_BASE = ("pissa", "olora", "loftq")
#: Inits whose artifact is the equivalent plain LoRA on the untouched base: W_res + s·B·A = W + s·(B·A − B₀·A₀),
#: and B·A − B₀·A₀ = [B, −B₀]·[A; A₀] is a LoRA of rank 2r (PEFT's `subtract_mutated_init`).
TO_PLAIN_LORA = ("pissa", "olora")
#: Inits computed from the weights or the data: their time counts as training time, as LP-FT's probe does.
COMPUTED_INITS = ("pissa", "olora", "loftq", "eva")


def lora_artifact(arch: Arch, o: Any) -> int:
    """Parameters of LoRA's artifact: the trained A and B, or, for an init exported as the equivalent plain
    LoRA on the untouched base (pissa, olora), twice as many (rank 2r)."""
    return lora_params(arch, o) * (2 if getattr(o, "init", "default") in TO_PLAIN_LORA else 1)


def loftq_unavailable() -> str | None:
    """Why PEFT's LoftQ cannot run on this machine, or None."""
    xpu = getattr(torch, "xpu", None)
    if not torch.cuda.is_available() and not (xpu is not None and xpu.is_available()):
        return (
            "needs a CUDA or XPU device: PEFT 0.21 quantizes and decomposes every weight for LoftQ on 'cuda' "
            "or 'xpu' only (peft.utils.loftq_utils.loftq_init), and this machine has neither; pissa and "
            "olora run on a CPU"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        return "needs bitsandbytes (its NF4 quantizer): pip install bitsandbytes"
    return None


@dataclass
class LoraOptions(ModelOptions):
    r: int = 16
    """Rank of the update."""
    alpha: float = 32.0
    """Scale numerator: the update is multiplied by alpha / r."""
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or 'all-linear' for every linear layer but the output head."""
    rslora: bool = False
    """Rank-stabilized LoRA (Kalajdzievski, 2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with
    LoRA"): scale the update by alpha / sqrt(r) instead of alpha / r, so that higher ranks keep learning."""
    init: str = "default"
    """How the adapter starts (each one's paper in LORA_INITS). default (A Kaiming-uniform, B zero: the
    Microsoft reference, PEFT's default), gaussian (A Gaussian scaled by the rank, B zero) and eva (A from
    the SVD of each adapted layer's inputs on the training split, B zero, ranks moved between layers) leave
    the base weights and the model's predictions as they are. pissa (A, B from the top-r singular vectors
    of W) and olora (from W's QR decomposition) move that part of W into the adapter: the base weights
    become the residual, the model computes what the base did, and the artifact is the equivalent plain
    LoRA of rank 2r on the untouched base. loftq replaces W by its 4-bit NF4 quantization Q and starts B·A
    near W − Q, so the model starts near the base, not at it; its adapter applies to Q, which PEFT rebuilds
    from the untouched base when it loads the adapter (PEFT computes LoftQ on CUDA or XPU only: refused on
    a CPU). dora and qlora take default, gaussian and eva."""
    lr_ratio: float = 1.0
    """LoRA+ (Hayou et al., 2024, "LoRA+: Efficient Low Rank Adaptation of Large Models"): the B matrices
    train at lr × lr_ratio (the paper suggests 16; 1 is plain LoRA). Groups from PEFT's
    create_loraplus_optimizer; a new classification head keeps its own head_lr."""

    #: Inits this method refuses, with the reason (a LoRA variant that cannot take a rewritten base).
    refused_inits: ClassVar[dict[str, str]] = {}

    def check(self, where: str) -> None:
        super().check(where)
        require(self.r >= 1, f"{where}.r", f"the rank must be at least 1, got {self.r}")
        require(
            self.init in LORA_INITS,
            f"{where}.init",
            f"expected one of {', '.join(LORA_INITS)}, got {self.init!r}.{did_you_mean(self.init, LORA_INITS)}",
        )
        refused = self.refused_inits.get(self.init)
        require(refused is None, f"{where}.init", f"{self.init} is not available here: {refused}")
        require(self.lr_ratio > 0, f"{where}.lr_ratio", f"must be positive, got {self.lr_ratio}")
        require(self.alpha > 0, f"{where}.alpha", "must be positive")
        require(0 <= self.dropout < 1, f"{where}.dropout", "must be in [0, 1)")
        require(bool(self.target_modules), f"{where}.target_modules", "name at least one module")


@METHODS.register("lora")
class Lora(PeftMethod):
    """LoRA (Hu et al., 2021): W x + (alpha / r) · B A x, A (r × d_in), B (d_out × r) zero-initialised so
    training starts from the base model; only A and B train. Other inits (`init`) start A and B from the
    weights or the data; those that rewrite W (PiSSA, OLoRA) are exported as the equivalent plain LoRA on
    the untouched base, so that the artifact loads, merges and is served like any other."""

    name = "lora"
    mergeable = True
    updates = "low-rank adapters on linear layers"
    summary = "train rank-r updates B·A beside frozen weights (PEFT); megabytes per task"
    Options = LoraOptions
    cost = Cost(
        "rank-r updates B·A beside frozen weights (artifact of rank 2r for pissa and olora)",
        added=lora_params,
        artifact=lora_artifact,
        block_activations=lora_activations,
        check=check_rank,
    )
    use_dora: ClassVar[bool] = False
    # DoRA and QLoRA inherit it: they differ from LoRA in the weight decomposition or the base's storage,
    # and comparing them at LoRA's rate isolates that difference (QLoRA's paper uses 2e-4 at 7B-13B).
    recipe = Recipe(
        lr=5e-4,
        lr_grid=(2e-4, 5e-4, 1e-3, 2e-3),
        warmup=0.06,
        source="LoRA (Hu et al., 2021, Table 9): RoBERTa-base at 4e-4 to 5e-4, 6% warm-up",
    )

    # Set by `adapt` (in `prepare`).
    _ctx: Context | None = None
    """The run's context, kept to load the untouched base again when an artifact is restored."""
    _initial: dict[str, torch.Tensor] | None = None
    """B₀ and A₀ as a base-rewriting init left them (pissa, olora): what the export subtracts."""
    _init_seconds: float = 0.0
    _from_artifact: Path | None = None
    """While `load_artifact` prepares a fresh base: the artifact whose own config wraps it."""

    def check(self, task: Task, model: ResolvedModel) -> None:
        super().check(task, model)
        if self.options.init == "loftq" and (reason := loftq_unavailable()):
            raise UnsupportedError(f"{self.name} with init: loftq on {model.name} {reason}")

    def peft_config(self, ctx: Context) -> Any:
        from peft import EvaConfig, LoftQConfig, LoraConfig  # lazy: slow import

        o = self.options
        return LoraConfig(
            r=o.r,
            lora_alpha=o.alpha,
            lora_dropout=o.dropout,
            target_modules=self.targets(),
            use_dora=self.use_dora,
            use_rslora=o.rslora,
            init_lora_weights=LORA_INITS[o.init],
            loftq_config=LoftQConfig() if o.init == "loftq" else {},
            eva_config=EvaConfig() if o.init == "eva" else None,
            **self.common(),
        )

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        from peft import LoraConfig, get_peft_model, get_peft_model_state_dict  # lazy: slow import

        self._ctx = ctx
        if self._from_artifact is not None:
            config = LoraConfig.from_pretrained(str(self._from_artifact))
            config.inference_mode = False  # trainable like any prepared adapter (same parameter counts)
            with warnings.catch_warnings():  # EVA's advice on memory: its data pass is not redone here
                warnings.filterwarnings("ignore", message=".*eva initialization used with low_cpu_mem_usage")
                return get_peft_model(model, config)
        init = self.options.init
        start = time.perf_counter()
        # EVA overwrites A at once: PEFT's low_cpu_mem_usage leaves it unallocated until then (its advice)
        peft_model = get_peft_model(model, self.peft_config(ctx), low_cpu_mem_usage=init == "eva")
        if init == "eva":
            self._eva(peft_model, ctx)
        if init == "loftq":
            _unscale(peft_model)
        if init in TO_PLAIN_LORA:
            state = get_peft_model_state_dict(peft_model)
            self._initial = {k: v.detach().clone() for k, v in state.items() if _is_factor(k)}
        self._init_seconds = time.perf_counter() - start if init in COMPUTED_INITS else 0.0
        return peft_model

    def _eva(self, peft_model: Any, ctx: Context) -> None:
        """EVA's data pass: the training split's batches, as training draws them, until each adapted layer's
        top singular vectors have settled (PEFT cycles through them until then). Every non-padding token
        counts (PEFT's label mask is not used): the update acts on the prompt's positions too."""
        from peft import initialize_lora_eva_weights  # lazy: slow import

        examples, _ = self.head.encode(self, ctx)
        stream = batch_stream(examples, ctx.budget.batch_size, ctx.seed, self.tokenizer.pad_token_id)
        batches = [
            {"input_ids": b.input_ids, "attention_mask": b.attention_mask}
            for b in itertools.islice(stream, max(1, len(examples) // ctx.budget.batch_size))
        ]
        initialize_lora_eva_weights(peft_model, batches, show_progress_bar=False)

    def fit(self, ctx: Context) -> TrainStats | None:
        stats = super().fit(ctx)
        if stats is not None:  # the init's SVD, QR or data pass is part of what the method costs
            stats.seconds += self._init_seconds
        return stats

    def export(self, folder: Path) -> None:
        super().export(folder)
        if self._initial is not None:
            from peft import get_peft_model_state_dict  # lazy: slow import

            to_plain_lora(folder, get_peft_model_state_dict(self.model), self._initial)

    def load_artifact(self, folder: Path) -> None:
        if self.options.init not in (*TO_PLAIN_LORA, "eva"):
            super().load_artifact(folder)
            return
        # The artifact is a plain LoRA of rank 2r on the untouched base (pissa, olora) or has the ranks EVA
        # gave each layer when it trained: the prepared model (a rewritten base, this process's own ranks)
        # cannot take it, so a freshly loaded base is wrapped with the artifact's own config.
        assert self._ctx is not None, "load_artifact comes after prepare"
        self.model = None
        release_memory()
        self._from_artifact = folder
        try:
            self.prepare(self._ctx)
        finally:
            self._from_artifact = None
        self._initial, self._init_seconds = None, 0.0
        super().load_artifact(folder)

    def info(self) -> dict[str, Any] | None:
        init = self.options.init
        if init not in COMPUTED_INITS:
            return None
        ranks = [layer.r["default"] for layer in _lora_layers(self.model) if "default" in layer.r]
        return {
            "init": init,
            "peft_init": LORA_INITS[init],
            "rewrites_base": init in REWRITES_BASE,
            "init_seconds": self._init_seconds,
            # eva: each layer's own rank (below); pissa and olora: the plain LoRA of twice the rank
            "artifact_rank": None if init == "eva" else self.options.r * (2 if init in TO_PLAIN_LORA else 1),
            "adapted_matrices": len(ranks),
            "rank_min": min(ranks, default=0),
            "rank_max": max(ranks, default=0),
            "rank_total": sum(ranks),
        }

    def param_groups(self, ctx: Context) -> list[dict[str, Any]] | None:
        groups = super().param_groups(ctx)  # [rest, head] when a new classification head trains
        if self.options.lr_ratio == 1.0:
            return groups
        from peft.optimizers import create_loraplus_optimizer  # lazy: slow import

        budget = ctx.budget.filled()
        assert budget.lr is not None and budget.weight_decay is not None  # filled() sets them
        plus = create_loraplus_optimizer(
            self.model,
            torch.optim.AdamW,
            lr=budget.lr,
            loraplus_lr_ratio=self.options.lr_ratio,
            weight_decay=budget.weight_decay,
        )
        head = groups[-1] if groups else None
        in_head = {id(p) for p in head["params"]} if head else set()
        kept = [
            {
                "params": [p for p in g["params"] if id(p) not in in_head],
                "lr": g["lr"],
                "weight_decay": g["weight_decay"],
            }
            for g in plus.param_groups
        ]
        return [g for g in kept if g["params"]] + ([head] if head else [])


def _is_factor(name: str) -> bool:
    """A LoRA A or B matrix in PEFT's state dict (not a head kept trainable through modules_to_save)."""
    return ".lora_A." in name or ".lora_B." in name


def _lora_layers(model: Any) -> list[Any]:
    from peft.tuners.lora.layer import LoraLayer  # lazy: slow import

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


@torch.no_grad()
def _unscale(peft_model: Any) -> None:
    """PEFT's LoftQ sets B·A to the rank-r SVD of W − Q without LoRA's scale s (alpha / r), so each layer
    would start at Q + s·(W − Q)ᵣ; A and B divided by √s start it at Q + (W − Q)ᵣ ≈ W, as in the paper."""
    for layer in _lora_layers(peft_model):
        root = math.sqrt(layer.scaling["default"])
        layer.lora_A["default"].weight.div_(root)
        layer.lora_B["default"].weight.div_(root)


def to_plain_lora(folder: Path, trained: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]) -> None:
    """Rewrite the PEFT adapter saved in `folder` by a PiSSA or OLoRA run as the equivalent plain LoRA on
    the untouched base: A' = [A; A₀], B' = [B, −B₀], rank 2r at the same scale (alpha doubled, or × √2
    with rslora), `init_lora_weights` true. The arithmetic of PEFT's `save_pretrained(...,
    path_initial_model_for_weight_conversion=...)`, done here because PEFT's conversion drops the tensors
    of `modules_to_save` (a new classification head) from the file (PEFT 0.21.2)."""
    tensors = {}
    for name, tensor in trained.items():
        if name in initial and ".lora_A." in name:
            tensor = torch.cat([tensor, initial[name]], dim=0)  # (2r, d_in)
        elif name in initial and ".lora_B." in name:
            tensor = torch.cat([tensor, -initial[name]], dim=1)  # (d_out, 2r)
        tensors[name] = tensor.detach().cpu().contiguous()
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["lora_alpha"] *= math.sqrt(2) if config.get("use_rslora") else 2
    config["r"] *= 2
    for key in ("rank_pattern", "alpha_pattern"):
        config[key] = {k: 2 * v for k, v in (config.get(key) or {}).items()}
    config["init_lora_weights"] = True
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@dataclass
class DoraOptions(LoraOptions):
    refused_inits: ClassVar[dict[str, str]] = {
        init: "it rewrites the base weights, and the artifact would have to be converted into an update of "
        "the untouched base, which has no form that carries DoRA's magnitude vector (PEFT converts plain "
        "LoRA only); default, gaussian and eva leave the base as it is"
        for init in REWRITES_BASE
    }


@METHODS.register("dora")
class Dora(Lora):
    """DoRA (Liu et al., 2024): the weight split into magnitude and direction; LoRA updates the direction
    and the per-column magnitude trains too."""

    name = "dora"
    updates = "low-rank direction + magnitude"
    summary = "LoRA on the direction of each weight plus a trained magnitude vector (PEFT)"
    Options = DoraOptions
    use_dora = True
    cost = Cost(
        "LoRA plus a learned magnitude per output; forms W + BA in the forward",
        added=dora_params,
        artifact=dora_params,
        block_activations=dora_activations,
        transient=dora_transient,
        check=check_rank,
    )


@dataclass
class QLoraOptions(LoraOptions):
    double_quant: bool = True
    """Quantize the quantization constants too (QLoRA's double quantization: about 0.37 bits a weight saved)."""

    refused_inits: ClassVar[dict[str, str]] = {
        "pissa": "PiSSA needs the base weights in floating point (PEFT refuses a 4-bit base) and would have "
        "to re-quantize its residual, so the adapter would no longer fit the base it trained on",
        "olora": "OLoRA would re-quantize its residual of the 4-bit base, so the adapter would no longer fit "
        "the base it trained on",
        "loftq": "LoftQ quantizes an unquantized base itself (PEFT: do not pass it a quantized model); "
        "lora with init: loftq is the LoftQ variant",
    }


@METHODS.register("qlora")
class QLora(Lora):
    """QLoRA (Dettmers et al., 2023): the frozen base's linear layers stored in 4-bit NormalFloat with
    double-quantized constants (bitsandbytes), LoRA adapters in fp32 on top; gradients flow through the
    dequantized weights. The computation (dequantized weights, activations) and the rest of the base
    (embeddings, norms) are in bf16 as in the paper where the run computes in bf16 (`precision: auto` on a
    GPU or a CPU with bf16 instructions), else in fp32: on a CPU without them (AVX2 only, an AMD EPYC here)
    bf16 is emulated, and one 4-bit layer's forward and backward took 16× as long in bf16 as in fp32
    (576 × 1536, 2,048 tokens: 32.6 s against 2.0 s, measured beside other work), so an 80-step run that takes
    minutes in fp32 would take hours.

    PEFT's `prepare_model_for_kbit_training` is not used: it casts the bf16 parts back to fp32 (undoing
    half the saving) and sets up gradient checkpointing, which tunebench does not use.
    """

    name = "qlora"
    mergeable = False  # merging into 4-bit weights would re-quantize them; served unmerged
    updates = "low-rank adapters over a 4-bit base"
    summary = "LoRA on a frozen NF4-quantized base (bitsandbytes); least memory for the base"
    Options = QLoraOptions
    cost = Cost(
        "LoRA on a 4-bit NF4 base (double-quantized constants unless double_quant: false)",
        added=lora_params,
        artifact=lora_params,
        quantized_base=True,
        block_activations=lora_activations,
        transient=largest_matrix,
        check=check_rank,
    )

    def fit(self, ctx: Context) -> TrainStats | None:
        if ctx.device.type == "cpu" and ctx.budget.dev_every:
            # Measured (SmolLM2-135M, 3-digit addition, 80 steps): with a dev evaluation every 10 steps
            # QLoRA's loss stopped falling after the first one (1.64 at step 40, LoRA's 0.26) and it scored
            # 0% on test; without dev evaluations the same run reaches 38.7%. Refused rather than wrong.
            raise UnsupportedError(
                "qlora with dev_every on a CPU: training after a dev evaluation goes wrong with "
                "bitsandbytes' CPU 4-bit layers (measured: 0% against 38.7% without it); leave dev_every "
                "and early_stopping off on the qlora entry (the other methods may keep them)"
            )
        return super().fit(ctx)

    def load_kwargs(self, ctx: Context) -> dict[str, Any]:
        from transformers import BitsAndBytesConfig  # lazy: slow import

        try:
            import bitsandbytes  # noqa: F401 (lazy: optional, QLoRA only)
        except ImportError:
            raise RuntimeError("qlora needs bitsandbytes: pip install bitsandbytes") from None
        # Output layers stay unquantized: a new classification head must train, and the LM head's logits
        # are worth their precision (as in the QLoRA paper). These are transformers' names for them.
        dtype = torch.bfloat16 if ctx.bf16 else torch.float32  # see the class docstring
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=self.options.double_quant,
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=["lm_head", "classifier", "score", "pooler"],
        )
        placement = {"": ctx.device.index or 0} if ctx.device.type == "cuda" else {"": "cpu"}
        return {"quantization_config": config, "device_map": placement, "dtype": dtype}


@dataclass
class Ia3Options(ModelOptions):
    target_modules: list[str] | None = None
    """Modules whose outputs are rescaled (None: PEFT's defaults for the architecture: keys, values, MLP)."""
    feedforward_modules: list[str] | None = None


@METHODS.register("ia3")
class Ia3(PeftMethod):
    """(IA)³ (Liu et al., 2022): learned vectors that rescale keys, values and the MLP's inner activations;
    the fewest trainable parameters of the additive family."""

    name = "ia3"
    mergeable = True
    updates = "scaling vectors on keys, values, MLP"
    summary = "learn per-channel rescaling vectors (PEFT); a few thousand parameters"
    Options = Ia3Options
    cost = Cost(
        "learned rescaling vectors on keys, values and the MLP activation",
        added=ia3_params,
        artifact=ia3_params,
        block_activations=ia3_activations,
    )
    recipe = Recipe(
        lr=3e-3,
        lr_grid=(1e-3, 3e-3, 1e-2),
        warmup=0.06,
        source="T-Few (Liu et al., 2022) trains (IA)3 vectors at 3e-3",
    )

    def peft_config(self, ctx: Context) -> Any:
        from peft import IA3Config  # lazy: slow import

        o = self.options
        return IA3Config(
            target_modules=o.target_modules, feedforward_modules=o.feedforward_modules, **self.common()
        )


@dataclass
class VirtualTokenOptions(ModelOptions):
    virtual_tokens: int = 20
    """Number of learned virtual tokens."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.virtual_tokens >= 1, f"{where}.virtual_tokens", "must be at least 1")


class VirtualTokenMethod(PeftMethod):
    """PEFT's prompt-learning methods: trained virtual tokens, the model's weights untouched. They change
    the forward pass itself, so the loss runs the whole forward and generation cannot start from a
    shared-prefix cache. A subclass names its PEFT config class."""

    Options = VirtualTokenOptions
    full_forward = True
    shares_kv_cache = False
    config_class: ClassVar[str]
    """The name of the PEFT config class (imported late: PEFT is slow to import)."""

    def peft_config(self, ctx: Context) -> Any:
        import peft  # lazy: slow import

        common = self.common()
        common.pop("modules_to_save")  # prompt-learning configs keep the head trainable by themselves
        return getattr(peft, self.config_class)(num_virtual_tokens=self.options.virtual_tokens, **common)


@METHODS.register("prefix")
class Prefix(VirtualTokenMethod):
    """Prefix tuning (Li & Liang, 2021): learned key/value vectors prepended at every layer's attention."""

    name = "prefix"
    updates = "key/value prefix at every layer"
    summary = "learn virtual key/value tokens prepended in every attention layer (PEFT)"
    config_class = "PrefixTuningConfig"
    cost = Cost("learned key/value prefixes at every block", added=prefix_params, artifact=prefix_params)
    recipe = Recipe(
        lr=1e-2,
        lr_grid=(3e-3, 1e-2, 3e-2),
        source="P-Tuning v2 (Liu et al., 2022) trains deep prefixes of BERT-class encoders at 5e-3 to 1e-2; "
        "PEFT's prefix-tuning example uses 1e-2",
    )


@METHODS.register("prompt")
class PromptTuning(VirtualTokenMethod):
    """Prompt tuning (Lester et al., 2021): learned embeddings of virtual tokens before the input only."""

    name = "prompt"
    updates = "soft prompt embeddings"
    summary = "learn the embeddings of virtual tokens placed before the input (PEFT)"
    config_class = "PromptTuningConfig"
    cost = Cost(
        "a learned soft prompt before the input",
        added=prompt_params,
        artifact=prompt_params,
        extra_tokens=virtual_tokens,
    )
    recipe = Recipe(
        lr=3e-2,
        lr_grid=(1e-2, 3e-2, 1e-1),
        source="PEFT's prompt-tuning example (AdamW at 3e-2); Lester et al. (2021) use 0.3 with Adafactor",
    )


@dataclass
class VeraOptions(ModelOptions):
    r: int = 256
    """Rank of the frozen random projections shared by every adapted layer (PEFT's default)."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or 'all-linear'."""
    d_initial: float = 0.1
    """Initial value of the scaling vector d (the paper's default)."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.r >= 1, f"{where}.r", f"the rank must be at least 1, got {self.r}")
        require(self.d_initial > 0, f"{where}.d_initial", "must be positive")


@METHODS.register("vera")
class Vera(PeftMethod):
    """VeRA (Kopiczko et al., 2024, "VeRA: Vector-based Random Matrix Adaptation"): one pair of frozen
    random low-rank matrices shared by all layers; each adapted layer trains two scaling vectors only."""

    name = "vera"
    mergeable = True
    updates = "scaling vectors on shared random projections"
    summary = "train two scaling vectors per layer around frozen random low-rank projections (PEFT)"
    Options = VeraOptions
    recipe = Recipe(
        lr=4e-3,
        lr_grid=(1e-3, 4e-3, 1e-2),
        warmup=0.06,
        source="VeRA (Kopiczko et al., 2024): its scaling vectors train at rates several times LoRA's "
        "(about 1e-3 to 1e-2 in the paper's GLUE and instruction-tuning runs)",
    )
    cost = Cost(
        "two trained vectors per adapted matrix (r and d_out) around frozen shared projections",
        added=vera_params,
        artifact=vera_params,
        block_activations=lora_activations,
        check=check_targets,
    )

    def peft_config(self, ctx: Context) -> Any:
        from peft import VeraConfig  # lazy: slow import

        o = self.options
        return VeraConfig(r=o.r, target_modules=self.targets(), d_initial=o.d_initial, **self.common())


@dataclass
class LohaOptions(ModelOptions):
    r: int = 8
    """Rank of each of the two low-rank factors whose Hadamard product is the update."""
    alpha: float = 8.0
    """Scale numerator: the update is multiplied by alpha / r."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or 'all-linear'."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.r >= 1, f"{where}.r", f"the rank must be at least 1, got {self.r}")
        require(self.alpha > 0, f"{where}.alpha", "must be positive")


@METHODS.register("loha")
class Loha(PeftMethod):
    """LoHa (Hyeon-Woo et al., 2022, "FedPara"; LyCORIS): the update is the Hadamard product of two
    low-rank products, (W1a W1b) ⊙ (W2a W2b), reaching rank r² with 2r(d_in + d_out) parameters."""

    name = "loha"
    mergeable = True
    updates = "Hadamard product of two low-rank updates"
    summary = "train two low-rank pairs whose element-wise product is the update (PEFT)"
    Options = LohaOptions
    recipe = Recipe(
        lr=5e-4,
        lr_grid=(2e-4, 5e-4, 1e-3, 2e-3),
        warmup=0.06,
        source="no language-model rate published for LoHa that we know of: LoRA's (same low-rank family; "
        "Hu et al., 2021), with the search to correct it",
    )
    cost = Cost(
        "two low-rank pairs per adapted matrix; the full-size update is formed in the forward pass",
        added=loha_params,
        artifact=loha_params,
        block_activations=lora_activations,
        formed_per_block=loha_formed,
        check=check_rank,
    )

    def peft_config(self, ctx: Context) -> Any:
        from peft import LoHaConfig  # lazy: slow import

        o = self.options
        return LoHaConfig(r=o.r, alpha=o.alpha, target_modules=self.targets(), **self.common())


@dataclass
class LokrOptions(ModelOptions):
    r: int = 8
    """Rank of a Kronecker factor when it is decomposed (PEFT decomposes W2 when r < half its larger side)."""
    alpha: float = 8.0
    """Scale numerator: the update is multiplied by alpha / r."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or 'all-linear'."""
    decompose_both: bool = False
    """Also decompose the first (smaller) Kronecker factor into rank r."""
    decompose_factor: int = -1
    """How each width is split into the two factors' sides: -1 near its square root (PEFT's default), or a
    side of this size where it divides the width (LyCORIS' factor)."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.r >= 1, f"{where}.r", f"the rank must be at least 1, got {self.r}")
        require(self.alpha > 0, f"{where}.alpha", "must be positive")
        require(
            self.decompose_factor == -1 or self.decompose_factor >= 1,
            f"{where}.decompose_factor",
            f"expected -1 (near the square root) or a positive side, got {self.decompose_factor}",
        )


@METHODS.register("lokr")
class Lokr(PeftMethod):
    """LoKr (Yeh et al., 2024, "Navigating Text-To-Image Customization: From LyCORIS Fine-Tuning to Model
    Evaluation"; LyCORIS): the update is a Kronecker product W1 ⊗ W2 of two small factors (the second of
    rank r when that is smaller), so a d × d update costs about 2d parameters at full rank."""

    name = "lokr"
    mergeable = True
    updates = "Kronecker product of two small factors"
    summary = "train two small matrices whose Kronecker product is the update (PEFT); LyCORIS' LoKr"
    Options = LokrOptions
    recipe = Recipe(
        lr=5e-4,
        lr_grid=(2e-4, 5e-4, 1e-3, 2e-3),
        warmup=0.06,
        source="no published LM rate: LoRA's (Hu et al., 2021), with the search to correct it (LoKr's "
        "paper tunes Stable Diffusion; PEFT's MetaMathQA benchmark runs LoKr on Llama-3.2-3B at its "
        "shared 1e-4, and at 3e-3 with decompose_factor 4)",
    )
    cost = Cost(
        "W1 ⊗ W2 per adapted matrix (PEFT's factorization); the full-size update is formed in the forward",
        added=lokr_params,
        artifact=lokr_params,
        formed_per_block=lokr_formed,
        check=check_targets,
    )

    def peft_config(self, ctx: Context) -> Any:
        from peft import LoKrConfig  # lazy: slow import

        o = self.options
        return LoKrConfig(
            r=o.r,
            alpha=o.alpha,
            target_modules=self.targets(),
            decompose_both=o.decompose_both,
            decompose_factor=o.decompose_factor,
            **self.common(),
        )


@dataclass
class AdaLoraOptions(ModelOptions):
    init_r: int = 12
    """Rank every adapted matrix starts with (PEFT's default; the paper starts at 1.5 × the target)."""
    target_r: int = 8
    """Average rank the budget is cut down to, over all adapted matrices (PEFT's default)."""
    alpha: float = 16.0
    """Scale numerator: the update is multiplied by alpha / init_r (16 in all of the AdaLoRA GLUE scripts)."""
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or 'all-linear'."""
    tinit: float = 0.1
    """Share of the run's steps that train at init_r before any pruning (the paper's GLUE scripts: 9-12%,
    e.g. 8,000 of MNLI's 86,000 steps)."""
    tfinal: float = 0.5
    """Share of the last steps that train with the final rank pattern fixed (the GLUE scripts: 44-58%)."""
    delta_t: int = 1
    """Steps between two reallocations of the budget during the pruning phase (PEFT's default; the paper
    used 100 in runs of 50,000 steps and more, far longer than tunebench's)."""
    orth_reg_weight: float = 0.1
    """Weight of the regulariser that keeps P and Q orthogonal (the paper's GLUE scripts; PEFT's default 0.5)."""
    beta1: float = 0.85
    """Smoothing of the sensitivity estimate (the paper's and PEFT's)."""
    beta2: float = 0.85
    """Smoothing of its uncertainty (the paper's and PEFT's)."""

    def check(self, where: str) -> None:
        super().check(where)
        require(
            self.init_r >= 2, f"{where}.init_r", f"must be at least 2 (pruning needs room), got {self.init_r}"
        )
        require(
            1 <= self.target_r < self.init_r,
            f"{where}.target_r",
            f"must be at least 1 and below init_r ({self.init_r}), got {self.target_r}",
        )
        require(self.alpha > 0, f"{where}.alpha", "must be positive")
        require(0 <= self.dropout < 1, f"{where}.dropout", "must be in [0, 1)")
        require(bool(self.target_modules), f"{where}.target_modules", "name at least one module")
        for key in ("tinit", "tfinal"):
            value = getattr(self, key)
            require(0 <= value < 1, f"{where}.{key}", f"a share of the steps in [0, 1), got {value}")
        require(
            self.tinit + self.tfinal < 1,
            f"{where}.tfinal",
            f"tinit + tfinal = {self.tinit + self.tfinal:g} leaves no steps to prune in; keep it below 1",
        )
        require(self.delta_t >= 1, f"{where}.delta_t", f"must be at least 1 step, got {self.delta_t}")
        require(self.orth_reg_weight >= 0, f"{where}.orth_reg_weight", "must be 0 or more")
        for key in ("beta1", "beta2"):
            value = getattr(self, key)
            require(0 < value < 1, f"{where}.{key}", f"must be in (0, 1), got {value}")


class AdaLoraHook(TrainHook):
    """AdaLoRA's part of each step, as PEFT's AdaLoraModel expects it: the orthogonality regulariser in the
    loss (PEFT adds it in its forward only when labels are passed, which tunebench's losses do not do, so
    it is added here), and `update_and_allocate` after every optimizer step, which scores each singular
    triplet's sensitivity and zeroes the least important ones until the average rank is target_r."""

    def __init__(self, options: AdaLoraOptions) -> None:
        self.options = options
        self.tuner: Any = None
        """PEFT's AdaLoraModel (its rank allocator and config), set by `start`."""
        self.factors: list[tuple[torch.nn.Parameter, bool]] = []
        """Every P and Q, with True for a Q (r × d_in: Q Qᵀ) and False for a P (d_out × r: Pᵀ P)."""

    def start(self, model: torch.nn.Module, steps: int) -> None:
        self.tuner = adalora_model(model)
        config = self.tuner.peft_config[self.tuner.trainable_adapter_name]
        # The run's schedule: `steps` optimizer steps, the first tinit and the last tfinal without pruning.
        # Floors keep tinit < steps - tfinal, as PEFT requires, since the options keep tinit + tfinal < 1.
        config.total_step = steps
        config.tinit = int(self.options.tinit * steps)
        config.tfinal = int(self.options.tfinal * steps)
        config.rank_pattern = None
        self.tuner.rankallocator.reset_ipt()
        adapter = self.tuner.trainable_adapter_name
        self.factors = [
            (p, "lora_A" in n)
            for n, p in self.tuner.model.named_parameters()
            if ("lora_A" in n or "lora_B" in n) and adapter in n
        ]

    def loss(self, model: torch.nn.Module) -> torch.Tensor | None:
        """orth_reg_weight × the mean over the factors of ‖QQᵀ − I‖_F and ‖PᵀP − I‖_F (PEFT's formula)."""
        if not self.factors or self.options.orth_reg_weight == 0:
            return None
        total = torch.zeros((), device=self.factors[0][0].device)
        for p, is_q in self.factors:
            gram = p @ p.T if is_q else p.T @ p  # (r, r)
            eye = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
            total = total + torch.linalg.matrix_norm(gram - eye)
        return self.options.orth_reg_weight * total / len(self.factors)

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        self.tuner.update_and_allocate(step - 1)  # PEFT counts steps from 0

    def state(self) -> dict[str, Any]:
        """The allocator's running statistics and the rank pattern: without them a resumed run would prune
        from fresh statistics, and one resumed in the final phase would have no pattern to keep."""
        allocator = self.tuner.rankallocator
        config = self.tuner.peft_config[self.tuner.trainable_adapter_name]
        stats = {k: dict(getattr(allocator, k)) for k in ("ipt", "exp_avg_ipt", "exp_avg_unc")}
        return {**stats, "rank_pattern": dict(config.rank_pattern or {})}

    def load_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        allocator = self.tuner.rankallocator
        device = self.factors[0][0].device if self.factors else None
        for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            setattr(allocator, key, {n: t.to(device) for n, t in state[key].items()})
        config = self.tuner.peft_config[self.tuner.trainable_adapter_name]
        config.rank_pattern = dict(state["rank_pattern"]) or None


def adalora_model(model: torch.nn.Module) -> Any:
    """PEFT's AdaLoraModel inside a PeftModel (the tuner that holds the rank allocator)."""
    tuner = getattr(model, "base_model", None)
    if tuner is None or not hasattr(tuner, "update_and_allocate"):
        raise TypeError(f"not a PEFT AdaLoRA model: {type(model).__name__}")
    return tuner


@METHODS.register("adalora")
class AdaLora(PeftMethod):
    """AdaLoRA (Zhang et al., 2023, "Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning"): each
    update in SVD form P Λ Q starts at rank init_r, and during training the singular triplets with the
    least sensitivity are pruned (their Λ entries zeroed) until the average rank is target_r, so the
    budget goes to the matrices that need it; a regulariser keeps P and Q orthogonal.

    Pruning runs in tunebench's loop (`train_hook`), so objectives trained by TRL (dpo, rl) are refused.
    The exported adapter holds only the surviving triplets, and its config their pattern (PEFT's format);
    loading puts them back at init_r with zeros for the pruned ones, which contribute nothing."""

    name = "adalora"
    mergeable = True
    updates = "SVD-form low-rank updates, pruned to a rank budget"
    summary = "LoRA in SVD form whose ranks are pruned by sensitivity to a total budget (PEFT)"
    Options = AdaLoraOptions
    recipe = Recipe(
        lr=5e-4,
        lr_grid=(2e-4, 5e-4, 1e-3, 2e-3),
        warmup=0.06,
        source="AdaLoRA (Zhang et al., 2023), the authors' GLUE scripts for DeBERTaV3-base: 5e-4 (MNLI) to "
        "8e-4 (SST-2); warm-up as LoRA's 6%",
    )
    cost = Cost(
        "P Λ Q at init_r per adapted matrix, pruned by zeroing (the tensors keep their size), the rank "
        "allocator's three statistics per trained value, and a frozen rank per matrix",
        added=adalora_params,
        frozen_added=adalora_ranknum,
        buffers=adalora_buffers,
        artifact=adalora_params,
        block_activations=adalora_activations,
        check=check_adalora,
    )

    def check(self, task: Task, model: ResolvedModel) -> None:
        super().check(task, model)
        if self.objective is not None and not self.objective.trains_in_loop:
            raise UnsupportedError(
                f"{self.name}+{self.objective.name}: AdaLoRA prunes its ranks after every optimizer step and "
                f"adds its orthogonality regulariser to the loss, both in tunebench's training loop; "
                f"{self.objective.name} trains through TRL's trainer, which does neither. Use lora+"
                f"{self.objective.name}, or adalora with the gold targets or a distill objective"
            )

    def peft_config(self, ctx: Context) -> Any:
        from peft import AdaLoraConfig  # lazy: slow import

        o = self.options
        # PEFT needs the schedule at construction; the training hook sets the run's own before training
        # (an objective's data can change the number of steps).
        steps = total_steps(ctx.budget.filled(), len(ctx.splits.train))
        return AdaLoraConfig(
            init_r=o.init_r,
            target_r=o.target_r,
            lora_alpha=o.alpha,
            lora_dropout=o.dropout,
            target_modules=self.targets(),
            tinit=int(o.tinit * steps),
            tfinal=int(o.tfinal * steps),
            deltaT=o.delta_t,
            beta1=o.beta1,
            beta2=o.beta2,
            orth_reg_weight=o.orth_reg_weight,
            total_step=max(steps, 1),
            **self.common(),
        )

    def train_hook(self) -> TrainHook:
        return AdaLoraHook(self.options)

    def text_nll(self, texts: list[str], ctx: Context) -> float | None:
        # PEFT adds the orthogonality regulariser to any loss computed with labels: not part of an NLL.
        tuner = adalora_model(self.model)
        config = tuner.peft_config[tuner.trainable_adapter_name]
        weight, config.orth_reg_weight = config.orth_reg_weight, 0.0
        try:
            return super().text_nll(texts, ctx)
        finally:
            config.orth_reg_weight = weight

    def export(self, folder: Path) -> None:
        tuner = adalora_model(self.model)
        config = tuner.peft_config[tuner.trainable_adapter_name]
        if config.rank_pattern is not None:
            # The pattern of the weights as they are (early stopping may have put back an earlier state
            # than the last pruning): a triplet survives where its Λ entry is not zero. A zero one adds
            # nothing, so leaving it out changes no prediction.
            config.rank_pattern = {
                n: (p.detach() != 0).view(-1).tolist()
                for n, p in tuner.model.named_parameters()
                if f"lora_E.{tuner.trainable_adapter_name}" in n
            }
        super().export(folder)

    def load_artifact(self, folder: Path) -> None:
        from peft import set_peft_model_state_dict  # lazy: slow import

        tensors = load_file(str(folder / "adapter_model.safetensors"))
        saved = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        pattern = saved.get("rank_pattern") or {}
        set_peft_model_state_dict(self.model, unprune(tensors, pattern, self.options.init_r))


def unprune(
    tensors: dict[str, torch.Tensor], pattern: dict[str, list[bool]], init_r: int
) -> dict[str, torch.Tensor]:
    """An exported AdaLoRA adapter back at init_r: PEFT saves only the surviving triplets (rows of Q and Λ,
    columns of P) with their pattern; the pruned ones come back as zeros, so the model has the parameters
    it trained with and the same predictions."""
    out = dict(tensors)
    for key, t in tensors.items():
        for part, dim in (("lora_A", 0), ("lora_E", 0), ("lora_B", 1)):
            if not key.endswith(f".{part}"):
                continue
            module = key.removeprefix("base_model.model.").removesuffix(part)
            keep = pattern.get(f"{module}lora_E")
            if keep is None:
                continue
            index = torch.tensor(keep).nonzero().flatten()
            if len(keep) != init_r or index.numel() != t.shape[dim]:
                raise UnsupportedError(
                    f"{key}: the adapter keeps {t.shape[dim]} of {len(keep)} triplets but its rank pattern "
                    f"marks {index.numel()} (this adalora entry has init_r {init_r})"
                )
            shape = list(t.shape)
            shape[dim] = init_r
            out[key] = t.new_zeros(shape).index_copy_(dim, index, t)
    return out
