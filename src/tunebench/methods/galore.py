"""GaLore (Zhao et al., 2024, "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection", ICML):
train every weight, but keep Adam's moments for a low-rank projection of each block matrix's gradient.

For a block matrix W (m × n) with gradient G, GaLore takes the top-r singular vectors P of G (recomputed
every `update_proj_gap` steps), runs Adam on the projected gradient R = PᵀG (r × n), and applies the
projected-back update α·P·Adam(R) to W. Adam's two moments shrink from m·n to r·n values (plus the
projection, m·r); the weights, their gradients and the activations are those of full fine-tuning.
Embeddings, norms, biases and a new classification head train with plain Adam, as in the paper.

The optimizer is galore-torch's `GaLoreAdamW` (the authors' package, PyPI `galore-torch` 1.0; `pip install
'tunebench[galore]'`), not a copy: the projection, its refresh schedule and the four projection types are
exactly the paper's code, and it works as is with torch 2.13 (checked: one of tests/test_galore.py's
checks compares its allocated states with the declared cost). It is given through the training loop's
optimizer hook (`ModelMethod.optimizer_factory`); the loop's fused AdamW stays for every other method.
Two things are added around it here: its per-matrix projector objects are stored in checkpoints as plain
tensors (torch's `weights_only` loading refuses arbitrary objects, and the optimizer's own loading would
mangle a string), so a killed run resumes with the same projections; and `reverse_std` at a rank that
reaches a block matrix's smaller side, where galore-torch's back-projection fails, is refused up front.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import torch

from tunebench.core.errors import SpecError, UnsupportedError, did_you_mean
from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context, Recipe
from tunebench.methods.cost import (
    Cost,
    all_weights,
    check_galore,
    galore_projections,
    galore_states,
    tied_embedding_grad,
)
from tunebench.methods.full import Full
from tunebench.methods.tuning import ModelOptions
from tunebench.models.blocks import transformer_blocks
from tunebench.models.zoo import ResolvedModel
from tunebench.tasks.base import Task
from tunebench.train.budget import Budget
from tunebench.train.loop import OptimizerFactory

#: galore-torch's projection types (GaLoreProjector.project).
PROJ_TYPES = ("std", "reverse_std", "right", "left", "full")
INSTALL = "pip install 'tunebench[galore]' (or pip install galore-torch)"


@dataclass
class GaloreOptions(ModelOptions):
    rank: int = 8
    """Rank of the gradient projection of each block matrix (at most the matrix's smaller side). The paper's
    GLUE fine-tuning of RoBERTa-base uses rank 4 (α 4) and rank 8 (α 2) (App. D.1, Table 7) and reports
    them as equal (85.89 and 85.94 average, Table 4); 8 here, the larger of the two for the same memory
    class. Its pre-training runs use 128 to 512 (60M–1B) and 1024 for 7B."""
    update_proj_gap: int = 200
    """Optimizer steps between recomputing the projection (an SVD of the gradient): the paper's subspace
    change frequency T = 200 (App. C.1; the GLUE table gives none, and the repository's GLUE example
    uses 500). A budget shorter than this keeps the projection of the first step throughout."""
    scale: float = 2.0
    """α, the scale of the projected-back update (a fractional learning rate for the block matrices): 2 with
    rank 8 in the paper's GLUE table (App. D.1, Table 7); its pre-training uses 0.25 at lr 0.01."""
    proj_type: str = "std"
    """Which side is projected: std (the smaller side, so the moments are rank × the larger; the paper's),
    reverse_std, right, left, or full (both sides)."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.rank >= 1, f"{where}.rank", f"the rank must be at least 1, got {self.rank}")
        require(self.update_proj_gap >= 1, f"{where}.update_proj_gap", "must be at least 1 step")
        require(self.scale > 0, f"{where}.scale", f"must be positive, got {self.scale}")
        if self.proj_type not in PROJ_TYPES:
            raise SpecError(
                f"{where}.proj_type: expected one of {', '.join(PROJ_TYPES)}, got {self.proj_type!r}."
                f"{did_you_mean(self.proj_type, PROJ_TYPES)}"
            )


@METHODS.register("galore")
class Galore(Full):
    name = "galore"
    updates = "all weights; low-rank projected Adam states"
    access = "white box"
    summary = (
        "train every weight with GaLore's optimizer: Adam on rank-r projections of the block matrices' "
        "gradients (galore-torch)"
    )
    trains = True
    Options = GaloreOptions
    cost = Cost(
        "every weight trained; Adam's moments of the block matrices are rank × one side, plus a projection "
        "matrix each",
        base_trained=all_weights,
        artifact=all_weights,
        transient=tied_embedding_grad,
        optimizer_states=galore_states,
        optimizer_extra=galore_projections,
        check=check_galore,
    )
    recipe = Recipe(
        lr=2e-5,
        lr_grid=(1e-5, 2e-5, 5e-5, 1e-4),
        weight_decay=0.0,
        warmup=0.1,
        source="GaLore's GLUE fine-tuning at rank 8 (Zhao et al., 2024, App. D.1, Table 7: 1e-5 to 3e-5, "
        "2e-5 on four of eight tasks; no weight decay in its run_glue.py); 10% warm-up as in its App. C.1",
    )

    def __init__(self, options: Any = None, objective: Any = None) -> None:
        super().__init__(options, objective)
        self.projected: list[torch.nn.Parameter] = []

    def check(self, task: Task, model: ResolvedModel) -> None:
        if importlib.util.find_spec("galore_torch") is None:
            raise UnsupportedError(
                f"galore trains with galore-torch's GaLoreAdamW, which is not installed: {INSTALL}"
            )
        super().check(task, model)

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        model.requires_grad_(True)
        # The paper projects the attention and MLP matrices of the blocks (its run_glue.py: the nn.Linear
        # weights named query/key/value/dense in them); every 2-D weight in a block is one of those.
        blocks = transformer_blocks(model)
        self.projected = [p for p in blocks.parameters() if p.dim() == 2]
        narrowest = min(min(p.shape) for p in self.projected)
        if self.options.proj_type == "reverse_std" and self.options.rank >= narrowest:
            raise UnsupportedError(reverse_std_refusal(self.options.rank, narrowest, ctx.model.name))
        return model

    def info(self) -> dict[str, Any] | None:
        o = self.options
        return {
            "projected_matrices": len(self.projected),
            "projected_weights": sum(p.numel() for p in self.projected),
            "rank": o.rank,
            "update_proj_gap": o.update_proj_gap,
            "scale": o.scale,
            "proj_type": o.proj_type,
        }

    def optimizer_factory(self) -> OptimizerFactory:
        projected = {id(p) for p in self.projected}
        o = self.options
        low_rank = {
            "rank": o.rank,
            "update_proj_gap": o.update_proj_gap,
            "scale": o.scale,
            "proj_type": o.proj_type,
        }

        def build(params: list[torch.nn.Parameter] | list[dict], budget: Budget) -> torch.optim.Optimizer:
            # each group (the trunk at lr, a new head at head_lr) splits into its plain and projected weights
            groups = params if params and isinstance(params[0], dict) else [{"params": params}]
            split: list[dict[str, Any]] = []
            for group in groups:
                settings = {k: v for k, v in group.items() if k != "params"}
                plain = [p for p in group["params"] if id(p) not in projected]
                matrices = [p for p in group["params"] if id(p) in projected]
                split += [{**settings, "params": plain}] if plain else []
                split += [{**settings, **low_rank, "params": matrices}] if matrices else []
            return galore_adamw(split, budget)

        return build


def reverse_std_refusal(rank: int, narrowest: int, model: str) -> str:
    # galore-torch 1.0's project_back picks the side from the projected gradient's shape, which is ambiguous
    # once the rank reaches a wide matrix's smaller side (measured: a 32 × 64 matrix at rank 40 fails with
    # "mat1 and mat2 shapes cannot be multiplied (32x64 and 32x32)"); std does not have the problem.
    return (
        f"galore.rank {rank} with proj_type reverse_std: galore-torch cannot project back a gradient whose "
        f"rank reaches a matrix's smaller side ({narrowest} in {model}); use a rank below {narrowest} or "
        "proj_type std"
    )


def galore_adamw(groups: list[dict[str, Any]], budget: Budget) -> torch.optim.Optimizer:
    """galore-torch's AdamW over `groups` (those with a "rank" are projected), its checkpoints made plain."""
    from galore_torch import GaLoreAdamW  # lazy: optional extra; it imports transformers and bitsandbytes

    assert budget.lr is not None and budget.weight_decay is not None, "galore_adamw needs a filled budget"
    optimizer = GaLoreAdamW(
        groups, lr=budget.lr, weight_decay=budget.weight_decay, no_deprecation_warning=True
    )
    optimizer.register_state_dict_post_hook(_plain_projectors)
    optimizer.register_load_state_dict_post_hook(_restore_projectors)
    return optimizer


def _plain_projectors(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    """In the saved state, each GaLoreProjector becomes its projection matrix alone (its settings are the
    group's). New dicts: the live optimizer state is left as it is."""
    plain = {}
    for key, state in state_dict["state"].items():
        projector = state.get("projector")
        if projector is not None and not isinstance(projector, dict):
            state = {**state, "projector": {"ortho_matrix": projector.ortho_matrix}}
        plain[key] = state
    state_dict["state"] = plain
    return state_dict


def _restore_projectors(optimizer: torch.optim.Optimizer) -> None:
    """After loading: rebuild each GaLoreProjector from its group's settings and its saved projection."""
    from galore_torch.galore_projector import GaLoreProjector  # lazy: optional extra, loaded by now

    for group in optimizer.param_groups:
        if "rank" not in group:
            continue
        for p in group["params"]:
            saved = optimizer.state.get(p, {}).get("projector")
            if isinstance(saved, dict):
                projector = GaLoreProjector(
                    group["rank"],
                    update_proj_gap=group["update_proj_gap"],
                    scale=group["scale"],
                    proj_type=group["proj_type"],
                )
                projector.ortho_matrix = saved["ortho_matrix"]
                optimizer.state[p]["projector"] = projector
