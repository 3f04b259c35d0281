"""LoRA (Hu et al., 2021) through PEFT: W x + (alpha / r) · B A x, with A (r × d_in) and B (d_out × r),
B zero-initialised so training starts from the base model. Only A and B are trained; the artifact is a
PEFT-format adapter of a few megabytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunebench.methods.base import METHODS, Context, DecoderMethod
from tunebench.typed import require


@dataclass
class LoraOptions:
    r: int = 16
    """Rank of the update."""
    alpha: float = 32.0
    """Scale numerator: the update is multiplied by alpha / r."""
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or 'all-linear' for every linear layer but the output head."""

    def check(self, where: str) -> None:
        require(self.r >= 1, f"{where}.r", f"the rank must be at least 1, got {self.r}")
        require(self.alpha > 0, f"{where}.alpha", "must be positive")
        require(0 <= self.dropout < 1, f"{where}.dropout", "must be in [0, 1)")
        require(bool(self.target_modules), f"{where}.target_modules", "name at least one module")


@METHODS.register("lora")
class Lora(DecoderMethod):
    name = "lora"
    updates = "low-rank adapters on linear layers"
    access = "white box"
    summary = "train rank-r updates B·A beside frozen weights (PEFT); megabytes per task"
    trains = True
    Options = LoraOptions

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        from peft import LoraConfig, get_peft_model

        o = self.options
        targets = o.target_modules[0] if o.target_modules == ["all-linear"] else o.target_modules
        config = LoraConfig(
            r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, target_modules=targets, task_type="CAUSAL_LM"
        )
        return get_peft_model(model, config)

    def export(self, folder: Path) -> None:
        self.model.save_pretrained(folder)  # adapter_config.json + adapter_model.safetensors

    def merge(self) -> bool:
        self.model = self.model.merge_and_unload()  # W + (alpha / r) · B A, one matrix per layer again
        return True
