"""Mixed-adapter LoRA in two matrix products per layer, whatever the mix of adapters in the batch.

PEFT's `adapter_names` path loops, in every layer, over the adapters present in the batch: gather their
rows, two small products, scatter back. On a CPU those many small operations cost more than the
arithmetic: a decode step of SmolLM2-135M with 16 rows took 258 ms across 4 adapters against 132 ms with
one (bench/serve_bench.py --kernels; BENCHMARKS.md, "Serving"), which ate most of what batching gains.

Here each LoRA layer stacks the A matrices of its adapters, A_cat (Σr × d_in), and puts their B
matrices, scaled by alpha / r, side by side, B_cat (d_out × Σr). A batch computes

    h = x A_catᵀ            (B, T, Σr)   every row against every adapter's A
    h = h ⊙ mask            (B, 1, Σr)   each row keeps only its own adapter's r columns (none: base)
    y = base(x) + h B_catᵀ  (B, T, d_out)

which is, row by row, exactly W x + (alpha / r) B_k A_k x for the row's adapter k — the zeroed columns add
exact zeros. It costs Σr / d_in more multiply-adds per layer (4 adapters of rank 16 on a 576-wide layer:
11%), in four operations whatever the number of adapters. This is the dense form of the gather-matmul
kernels of Punica and S-LoRA. PEFT still loads, holds and unloads the adapters; this module only
computes with their weights, and only for plain LoRA on Linear layers (no DoRA or other variant, no
LoRA bias, no modules_to_save or trainable tokens): a batch with any other adapter takes PEFT's path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from peft.tuners.lora.layer import LoraLayer


def lora_linears(peft_model) -> list[LoraLayer]:
    from peft.tuners.lora.layer import LoraLayer  # lazy: slow import

    return [m for m in peft_model.modules() if isinstance(m, LoraLayer)]


def _weight(adapters: torch.nn.ModuleDict, name: str) -> torch.Tensor:
    """The weight of adapter `name` in a LoRA layer's `lora_A` or `lora_B`: an nn.Linear for plain LoRA."""
    return cast(torch.nn.Linear, adapters[name]).weight


def is_plain(peft_model, name: str) -> bool:
    """Whether adapter `name` is plain LoRA on Linear layers, which the stacked path computes exactly."""
    from peft.tuners.lora.layer import Linear  # lazy: slow import

    config = peft_model.peft_config.get(name)
    if (
        config is None
        or getattr(config, "modules_to_save", None)
        or getattr(config, "trainable_token_indices", None)
    ):
        return False
    for layer in lora_linears(peft_model):
        holds = name in layer.lora_A or name in getattr(layer, "lora_embedding_A", {})
        if not holds:
            continue
        if type(layer) is not Linear or name in layer.lora_variant or layer.lora_bias.get(name):
            return False
        if getattr(layer, "fan_in_fan_out", False):
            return False
    return True


class StackedLora:
    """The stacked weights of every plain adapter, per layer, rebuilt after an adapter comes or goes."""

    def __init__(self, peft_model) -> None:
        self.peft = peft_model
        self.plain: set[str] = set()
        self._stacks: dict[LoraLayer, tuple[tuple, torch.Tensor, torch.Tensor]] | None = None

    def update(self, plain: set[str]) -> None:
        self.plain = set(plain)
        self._stacks = None

    def covers(self, adapters: list[str | None]) -> bool:
        return all(a is None or a in self.plain for a in adapters)

    def _build(self) -> dict[LoraLayer, tuple[tuple, torch.Tensor, torch.Tensor]]:
        stacks = {}
        for layer in lora_linears(self.peft):
            names = sorted(a for a in layer.lora_A if a in self.plain)
            if not names:
                continue
            a_cat = torch.cat([_weight(layer.lora_A, a) for a in names])  # (Σr, d_in)
            b_cat = torch.cat(
                [_weight(layer.lora_B, a) * layer.scaling[a] for a in names], dim=1
            )  # (d_out, Σr)
            layout = tuple((a, _weight(layer.lora_A, a).shape[0]) for a in names)
            stacks[layer] = (layout, a_cat, b_cat)
        return stacks

    @contextlib.contextmanager
    def active(self, adapters: list[str | None]) -> Iterator[None]:
        """Within: the PEFT model computes each row with its own adapter (None: the base model)."""
        if self._stacks is None:
            self._stacks = self._build()
        masks: dict[tuple, torch.Tensor | None] = {}
        handles = []
        try:
            for layer, (layout, a_cat, b_cat) in self._stacks.items():
                if layout not in masks:
                    masks[layout] = _mask(layout, adapters, a_cat)
                if masks[layout] is not None:
                    assert isinstance(layer, torch.nn.Module)  # PEFT's LoRA layers are modules too
                    hook = partial(_add_lora, a_cat=a_cat, b_cat=b_cat, mask=masks[layout])
                    handles.append(layer.register_forward_hook(hook))
            with self.peft.disable_adapter():  # PEFT's layers give the base output; the hooks add LoRA
                yield
        finally:
            for handle in handles:
                handle.remove()


def _mask(layout: tuple, adapters: list[str | None], like: torch.Tensor) -> torch.Tensor | None:
    """(B, Σr): 1 where a row's adapter owns the column; None when no row uses this layer's adapters."""
    offsets, start = {}, 0
    for name, r in layout:
        offsets[name] = (start, start + r)
        start += r
    mask = torch.zeros(len(adapters), start, dtype=like.dtype, device=like.device)
    for row, name in enumerate(adapters):
        if name in offsets:
            lo, hi = offsets[name]
            mask[row, lo:hi] = 1
    return mask if bool(mask.any()) else None


def _add_lora(layer, args, output, *, a_cat, b_cat, mask):
    x = args[0]  # (B, T, d_in)
    h = F.linear(x.to(a_cat.dtype), a_cat)  # (B, T, Σr)
    h = h * mask.view(mask.shape[0], *([1] * (h.dim() - 2)), mask.shape[1])
    return output + F.linear(h, b_cat).to(output.dtype)  # (B, T, d_out)
