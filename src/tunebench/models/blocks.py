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
