"""Finding a loaded model's stack of transformer blocks, whatever wraps it (PEFT, a classification head)."""

from __future__ import annotations

import torch

from tunebench.core.errors import UnsupportedError


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's stack of transformer blocks: the ModuleList as long as config.num_hidden_layers."""
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if not candidates:
        raise UnsupportedError(f"cannot find the {n} transformer blocks of {type(model).__name__}")
    return candidates[0]


# Where decoders keep the norm between their last block and the output head: Llama, Mistral, Qwen, Gemma
# and SmolLM (`model.norm`), GPT-2 and GPT-J (`transformer.ln_f`), OPT (`decoder.final_layer_norm`),
# Falcon (`transformer.ln_f`), Mamba-style stacks (`backbone.norm_f`). Encoders such as BERT have none.
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "norm_f")


def final_norm(model: torch.nn.Module) -> torch.nn.Module | None:
    """The norm after the last transformer block, or None where the model has none (BERT-style encoders).

    Looked for on the module that holds the blocks (`transformer_blocks`' parent), so a PEFT wrapper or a
    classification head around the model does not hide it."""
    blocks = transformer_blocks(model)
    for holder in model.modules():
        if any(child is blocks for child in holder.children()):
            for name in FINAL_NORM_NAMES:
                norm = getattr(holder, name, None)
                if isinstance(norm, torch.nn.Module):
                    return norm
            return None
    return None
