"""The `adapter` method: bottleneck adapters (see bottleneck.py) in Houlsby or Pfeiffer placement."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context, Recipe
from tunebench.methods.bottleneck import ACTIVATIONS, insert_adapters
from tunebench.methods.cost import Cost, adapter_activations, adapter_params, check_adapter
from tunebench.methods.tuning import ModelMethod, ModelOptions


@dataclass
class AdapterOptions(ModelOptions):
    placement: str = "houlsby"
    """houlsby (after attention and after the MLP) or pfeiffer (after the MLP only)."""
    reduction: int = 16
    """Bottleneck width = hidden size / reduction."""
    activation: str = "relu"

    def check(self, where: str) -> None:
        super().check(where)
        require(
            self.placement in ("houlsby", "pfeiffer"),
            f"{where}.placement",
            f"expected houlsby or pfeiffer, got {self.placement!r}",
        )
        require(self.reduction >= 1, f"{where}.reduction", "must be at least 1")
        require(
            self.activation in ACTIVATIONS,
            f"{where}.activation",
            f"expected one of {', '.join(ACTIVATIONS)}, got {self.activation!r}",
        )


@METHODS.register("adapter")
class Adapter(ModelMethod):
    name = "adapter"
    updates = "bottleneck modules in every block"
    access = "white box"
    summary = "insert small down/up-projection modules after attention and MLP (Houlsby) or MLP (Pfeiffer)"
    trains = True
    Options = AdapterOptions
    cost = Cost(
        "bottleneck adapters inside every block",
        added=adapter_params,
        artifact=adapter_params,
        block_activations=adapter_activations,
        check=check_adapter,
    )
    recipe = Recipe(
        lr=1e-3,
        lr_grid=(3e-4, 1e-3, 3e-3, 1e-2),
        source="Houlsby et al. (2019) search {3e-5, 3e-4, 3e-3}; the adapters start near the identity, so "
        "we start between the upper two",
    )

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        o = self.options
        self.inserted = insert_adapters(model, o.placement, o.reduction, o.activation)
        return model  # the new modules are created trainable; everything else stays frozen
