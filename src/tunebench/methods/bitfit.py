"""BitFit (Ben Zaken et al., 2022, "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based
Masked Language-models"): only the bias terms train (attention, feed-forward and LayerNorm biases), and a
new classification head. Written here: PEFT has no BitFit.

A model without bias terms (Llama-style decoders: SmolLM2, Gemma 3) has nothing for it to train, and is
refused before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tunebench.core.errors import UnsupportedError
from tunebench.methods.base import METHODS, Context, Recipe
from tunebench.methods.cost import Cost, bias_params
from tunebench.methods.tuning import ModelMethod
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks.base import Task

#: Architectures whose blocks always carry bias terms (a config flag says so for the others).
BIASED_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "gpt2", "qwen2"}
)


def has_bias_terms(model: ResolvedModel) -> bool:
    """Whether the model's blocks have bias terms, read from its config.json."""
    try:
        config: dict[str, Any] = json.loads((Path(model.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # not a local folder (a hub id): let loading decide
    if config.get("model_type") in BIASED_TYPES:
        return True
    return bool(config.get("attention_bias") or config.get("mlp_bias") or config.get("use_bias"))


@METHODS.register("bitfit")
class BitFit(ModelMethod):
    name = "bitfit"
    updates = "bias terms"
    access = "white box"
    summary = "train only the bias terms (BitFit); a fraction of a percent of the weights, no new modules"
    trains = True
    recipe = Recipe(
        lr=1e-3,
        lr_grid=(3e-4, 1e-3, 3e-3),
        source="BitFit (Ben Zaken et al., 2022, §3): rates of 1e-4 to 1e-3 searched on GLUE with BERT-base",
    )
    cost = Cost(
        "the bias terms trained (and a new classification head); gradients flow through every block",
        base_trained=bias_params,
        artifact=bias_params,
    )

    def check(self, task: Task, model: ResolvedModel) -> None:
        super().check(task, model)
        if model.kind != "endpoint" and not has_bias_terms(model):
            raise UnsupportedError(
                f"bitfit trains bias terms, and {model.name}'s blocks have none (a Llama-style model); "
                "choose a model with biases (BERT-style encoders, GPT-2, Qwen2) or another method"
            )

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.requires_grad_(True)
        return model
