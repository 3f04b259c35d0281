"""Full fine-tuning (fine-tuning II) and partial fine-tuning (fine-tuning I).

`full` trains every weight; its artifact is a whole model in safetensors that transformers loads as it
is. `partial` trains only the last k blocks and the output head (or, with `select: snr`, the k matrices of
each kind with the highest signal-to-noise ratio: Spectrum, methods/spectrum.py); its artifact holds only
those tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from tunebench.core.errors import SpecError, UnsupportedError, did_you_mean
from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context, Recipe
from tunebench.methods.cost import (
    Cost,
    all_weights,
    check_partial,
    partial_depth,
    partial_trained,
    partial_transient,
    tied_embedding_grad,
)
from tunebench.methods.spectrum import choose_by_snr
from tunebench.methods.tuning import ModelMethod, ModelOptions
from tunebench.models.blocks import final_norm, transformer_blocks

#: How `partial` chooses what trains.
PARTIAL_SELECT = ("last", "snr")


@METHODS.register("full")
class Full(ModelMethod):
    name = "full"
    cost = Cost(
        "every weight trained", base_trained=all_weights, artifact=all_weights, transient=tied_embedding_grad
    )
    updates = "all weights"
    access = "white box"
    summary = "train every weight; the strongest and the most costly in memory and storage"
    trains = True
    recipe = Recipe(
        lr=2e-5,
        lr_grid=(1e-5, 2e-5, 5e-5, 1e-4),
        weight_decay=0.01,
        warmup=0.1,
        source="BERT (Devlin et al., 2019, App. A.3): AdamW at 2e-5 to 5e-5, weight decay 0.01, 10% warm-up",
    )

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        return model.requires_grad_(True)

    def export(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def load_artifact(self, folder: Path) -> None:
        result = self.model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
        tied = set(getattr(self.model, "_tied_weights_keys", None) or [])
        missing = [k for k in result.missing_keys if k not in tied and not k.endswith("lm_head.weight")]
        if missing or result.unexpected_keys:
            raise UnsupportedError(
                f"{folder}: weights do not match the model ({(missing + result.unexpected_keys)[:3]})"
            )


@dataclass
class PartialOptions(ModelOptions):
    blocks: int = 2
    """How many of the last transformer blocks train (select: last), or how many matrices of each kind
    (select: snr): the same number of matrix weights either way."""
    output_head: bool = True
    """Train the output head too (for a generating decoder with tied embeddings this is the embedding matrix;
    a new classification head always trains)."""
    select: str = "last"
    """last: the last `blocks` whole blocks (fine-tuning I). snr: Spectrum's choice (Hartford et al., 2024):
    within each kind of block matrix (q, k, v, o, gate, up, down), the `blocks` matrices whose singular
    values carry the most signal above the Marchenko–Pastur noise edge, in whichever blocks they are; each
    trains with its bias, the blocks' norms stay frozen (a vector has no spectrum). The choice is recorded
    in result.json (`method_info`)."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.blocks >= 1, f"{where}.blocks", f"train at least one block, got {self.blocks}")
        if self.select not in PARTIAL_SELECT:
            raise SpecError(
                f"{where}.select: expected {' or '.join(PARTIAL_SELECT)}, got {self.select!r}."
                f"{did_you_mean(self.select, PARTIAL_SELECT)}"
            )


@METHODS.register("partial")
class Partial(ModelMethod):
    name = "partial"
    updates = "last k blocks + head"
    access = "white box"
    summary = (
        "fine-tuning I: train the last k transformer blocks (or, select: snr, the k matrices of each kind "
        "with the highest signal-to-noise ratio) and the output head, freeze the rest"
    )
    trains = True
    Options = PartialOptions
    cost = Cost(
        "the last k blocks (select: snr, k matrices of each kind, without the blocks' norms, gradients "
        "through every block) and (by default) the output head trained",
        base_trained=partial_trained,
        backprop_layers=partial_depth,
        transient=partial_transient,
        artifact=partial_trained,
        check=check_partial,
    )
    recipe = Recipe(
        lr=5e-5,
        lr_grid=(2e-5, 5e-5, 1e-4, 2e-4),
        weight_decay=0.01,
        warmup=0.1,
        source="BERT's fine-tuning range (Devlin et al., 2019) at its top, 5e-5: only the top blocks move",
    )

    chosen: dict[str, Any] | None = None

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        blocks = transformer_blocks(model)
        if self.options.blocks > len(blocks):
            raise UnsupportedError(
                f"partial.blocks is {self.options.blocks} but {ctx.model.name} has {len(blocks)} blocks"
            )
        if self.options.select == "snr":
            # computed from the pretrained weights, so a fresh object (reloading the artifact) chooses alike
            matrices = choose_by_snr(blocks, self.options.blocks)
            for choice in matrices:
                choice.module.requires_grad_(True)  # its weight and its bias
            self.chosen = {
                "select": "snr",
                "matrices": [
                    {"block": c.block, "kind": c.kind, "snr": c.snr if math.isfinite(c.snr) else None}
                    for c in matrices
                ],
                "blocks": sorted({c.block for c in matrices}),
            }
        else:
            first = len(blocks) - self.options.blocks
            for block in blocks[first:]:
                block.requires_grad_(True)
            self.chosen = {"select": "last", "blocks": list(range(first, len(blocks)))}
        # A transformers model or a SequenceClassifier: both have get_output_embeddings, which
        # torch.nn.Module does not declare.
        lm: Any = model
        if self.options.output_head and lm.get_output_embeddings() is not None:
            lm.get_output_embeddings().requires_grad_(True)
        norm = final_norm(model)
        if norm is not None:
            norm.requires_grad_(True)  # the final norm sits between the last block and the head
        return model

    def info(self) -> dict[str, Any] | None:
        return self.chosen
