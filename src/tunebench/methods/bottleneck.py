"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021), written by hand: PEFT has none.

An adapter maps a sublayer's output h (…, d) to

    h + W_up · f(W_down · h + b_down) + b_up,     W_down: (d/r × d), W_up: (d × d/r)

with r the reduction factor and f a nonlinearity. W_up and b_up start at zero, so a freshly inserted
adapter is the identity and training starts from the base model. Houlsby placement puts one adapter
after the attention output projection and one after the MLP output projection of every block;
Pfeiffer placement only the one after the MLP. The adapters sit before the residual addition, as in
both papers. Only adapter weights train; they are saved as safetensors with a small JSON config.
"""

from __future__ import annotations

import torch
from torch import nn

# Output projections by architecture family: (attention output, MLP output), as module-name suffixes.
OUTPUT_PROJECTIONS = [
    ("self_attn.o_proj", "mlp.down_proj"),  # Llama, Gemma, Mistral, Qwen
    ("attention.output.dense", "output.dense"),  # BERT family
    ("attn.c_proj", "mlp.c_proj"),  # GPT-2
    ("self_attn.out_proj", "fc2"),  # OPT
]
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    def __init__(self, dim: int, reduction: int, activation: str = "relu") -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.down = nn.Linear(dim, hidden)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)  # identity at the start
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (…, d) → (…, d)
        return h + self.up(self.act(self.down(h)))


class WithAdapter(nn.Module):
    """A frozen projection followed by its adapter; replaces the projection in the model."""

    def __init__(self, projection: nn.Linear, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.projection = projection
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.projection(x))


def insert_adapters(model: nn.Module, placement: str, reduction: int, activation: str) -> int:
    """Wrap the output projections of every block; returns how many adapters were inserted."""
    names = [name for name, _ in model.named_modules()]
    for attention_suffix, mlp_suffix in OUTPUT_PROJECTIONS:
        attention = [n for n in names if n.endswith(attention_suffix)]
        mlp = [n for n in names if n.endswith(mlp_suffix) and not n.endswith(attention_suffix)]
        if mlp:
            break
    else:
        raise ValueError(f"no known MLP output projection in {type(model).__name__}")
    targets = mlp + (attention if placement == "houlsby" else [])
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        projection = getattr(parent, child)
        adapter = BottleneckAdapter(projection.out_features, reduction, activation).to(
            projection.weight.device
        )
        setattr(parent, child, WithAdapter(projection, adapter))
    return len(targets)
