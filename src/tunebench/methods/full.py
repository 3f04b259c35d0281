"""Full fine-tuning (fine-tuning II): every weight trained. The artifact is a whole model in safetensors."""

from __future__ import annotations

from pathlib import Path

import torch

from tunebench.methods.base import METHODS, Context, DecoderMethod


@METHODS.register("full")
class Full(DecoderMethod):
    name = "full"
    updates = "all weights"
    access = "white box"
    summary = "train every weight; the strongest and the most costly in memory and storage"
    trains = True

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def export(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
