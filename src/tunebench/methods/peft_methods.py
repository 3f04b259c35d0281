"""The methods PEFT implements: LoRA, DoRA, IA3, QLoRA, prefix tuning and prompt tuning.

Each is a PEFT config built from the method's options; wrapping, saving (PEFT format, loadable by PEFT
and by `tunebench serve`) and loading are shared in `PeftMethod`. A new classification head is kept
trainable through PEFT's `modules_to_save`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from safetensors.torch import load_file

from tunebench.core.errors import UnsupportedError
from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context, Recipe
from tunebench.methods.cost import (
    Cost,
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
    lora_activations,
    lora_params,
    prefix_params,
    prompt_params,
    vera_params,
    virtual_tokens,
)
from tunebench.methods.tuning import ModelMethod, ModelOptions
from tunebench.train.loop import TrainStats


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


#: LoRA initializations that leave the base model's weights as they are (PEFT's names; `default` is True).
LORA_INITS: dict[str, bool | Literal["gaussian"]] = {"default": True, "gaussian": "gaussian"}


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
    """How the adapter starts: default (A Kaiming-uniform, B zero: the Microsoft reference, PEFT's default)
    or gaussian (A Gaussian scaled by the rank, B zero). Both leave the model unchanged before training."""
    lr_ratio: float = 1.0
    """LoRA+ (Hayou et al., 2024, "LoRA+: Efficient Low Rank Adaptation of Large Models"): the B matrices
    train at lr × lr_ratio (the paper suggests 16; 1 is plain LoRA). Groups from PEFT's
    create_loraplus_optimizer; a new classification head keeps its own head_lr."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.r >= 1, f"{where}.r", f"the rank must be at least 1, got {self.r}")
        require(
            self.init in LORA_INITS,
            f"{where}.init",
            f"expected one of {', '.join(LORA_INITS)}, got {self.init!r}",
        )
        require(self.lr_ratio > 0, f"{where}.lr_ratio", f"must be positive, got {self.lr_ratio}")
        require(self.alpha > 0, f"{where}.alpha", "must be positive")
        require(0 <= self.dropout < 1, f"{where}.dropout", "must be in [0, 1)")
        require(bool(self.target_modules), f"{where}.target_modules", "name at least one module")


@METHODS.register("lora")
class Lora(PeftMethod):
    """LoRA (Hu et al., 2021): W x + (alpha / r) · B A x, A (r × d_in), B (d_out × r) zero-initialised so
    training starts from the base model; only A and B train."""

    name = "lora"
    mergeable = True
    updates = "low-rank adapters on linear layers"
    summary = "train rank-r updates B·A beside frozen weights (PEFT); megabytes per task"
    Options = LoraOptions
    cost = Cost(
        "rank-r updates B·A beside frozen weights",
        added=lora_params,
        artifact=lora_params,
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

    def peft_config(self, ctx: Context) -> Any:
        from peft import LoraConfig  # lazy: slow import

        o = self.options
        return LoraConfig(
            r=o.r,
            lora_alpha=o.alpha,
            lora_dropout=o.dropout,
            target_modules=self.targets(),
            use_dora=self.use_dora,
            use_rslora=o.rslora,
            init_lora_weights=LORA_INITS[o.init],
            **self.common(),
        )

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


@METHODS.register("dora")
class Dora(Lora):
    """DoRA (Liu et al., 2024): the weight split into magnitude and direction; LoRA updates the direction
    and the per-column magnitude trains too."""

    name = "dora"
    updates = "low-rank direction + magnitude"
    summary = "LoRA on the direction of each weight plus a trained magnitude vector (PEFT)"
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


@METHODS.register("qlora")
class QLora(Lora):
    """QLoRA (Dettmers et al., 2023): the frozen base's linear layers stored in 4-bit NormalFloat with
    double-quantized constants (bitsandbytes), the rest of the base (embeddings, norms) in bf16 as in the
    paper, LoRA adapters in fp32 on top; gradients flow through the dequantized weights.

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
        compute_bytes=2,
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
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=self.options.double_quant,
            bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=["lm_head", "classifier", "score", "pooler"],
        )
        placement = {"": ctx.device.index or 0} if ctx.device.type == "cuda" else {"": "cpu"}
        return {"quantization_config": config, "device_map": placement, "dtype": torch.bfloat16}


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
