"""Orthogonal fine-tuning through PEFT: OFT and BOFT.

Both keep each adapted weight's singular values and rotate its input space instead of adding to it: the
input of every adapted linear layer is multiplied by a learned orthogonal matrix, built by the Cayley
transform of a skew-symmetric one, so the angles between the pretrained neurons (their "hyperspherical
energy") are preserved. OFT makes the rotation block-diagonal; BOFT composes block-diagonal factors with
butterfly permutations, so a few factors reach a dense rotation. The rotations start at the identity:
training starts from the base model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from tunebench.core.errors import UnsupportedError
from tunebench.core.typed import require
from tunebench.methods.base import METHODS, Context, Recipe
from tunebench.methods.cost import (
    Cost,
    boft_activations,
    boft_buffers,
    boft_formed,
    boft_params,
    check_blocks,
    oft_formed,
    oft_params,
)
from tunebench.methods.peft_methods import PeftMethod
from tunebench.methods.tuning import ModelOptions

#: Neither paper gives a rate for a language model that we could check; PEFT's MetaMathQA benchmark runs
#: both on Llama-3.2-3B at the 1e-4 it gives every method. So: LoRA's, with the search to correct it.
ORTHOGONAL_RECIPE = Recipe(
    lr=5e-4,
    lr_grid=(2e-4, 5e-4, 1e-3, 2e-3),
    warmup=0.06,
    source="no published LM rate: LoRA's (Hu et al., 2021), with the search to correct it (the OFT paper "
    "tunes text-to-image diffusion; PEFT's MetaMathQA benchmark runs OFT and BOFT at its shared 1e-4)",
)


@dataclass
class OftOptions(ModelOptions):
    block_size: int = 32
    """Side of each orthogonal block (PEFT's default); it must divide the input width of every adapted
    matrix. Parameters per matrix: d_in · (block_size - 1) / 2."""
    block_share: bool = False
    """One block shared by all the blocks of a matrix (b(b-1)/2 parameters per matrix)."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or 'all-linear'."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.block_size >= 2, f"{where}.block_size", f"must be at least 2, got {self.block_size}")
        require(bool(self.target_modules), f"{where}.target_modules", "name at least one module")


def _targets(options: Any) -> str | list[str]:
    modules = options.target_modules
    return modules[0] if modules == ["all-linear"] else modules


@METHODS.register("oft")
class Oft(PeftMethod):
    """OFT (Qiu et al., 2023, "Controlling Text-to-Image Diffusion by Orthogonal Finetuning"): each adapted
    layer's input is rotated by a block-diagonal orthogonal matrix R = (I + S)(I − S)⁻¹, S skew-symmetric
    per block (PEFT 0.21 approximates the inverse by a 5-term Neumann series)."""

    name = "oft"
    mergeable = True
    updates = "block-diagonal orthogonal rotations of layer inputs"
    summary = "train block-diagonal orthogonal rotations of each layer's input space (PEFT)"
    Options = OftOptions
    recipe = ORTHOGONAL_RECIPE
    cost = Cost(
        "d_in/b skew-symmetric blocks per adapted matrix; the rotations are formed in the forward pass",
        added=oft_params,
        artifact=oft_params,
        formed_per_block=oft_formed,
        check=check_blocks,
    )

    def peft_config(self, ctx: Context) -> Any:
        from peft import OFTConfig  # lazy: slow import

        o = self.options
        return OFTConfig(
            r=0,
            oft_block_size=o.block_size,
            block_share=o.block_share,
            target_modules=_targets(o),
            **self.common(),
        )

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        adapted = super().adapt(model, ctx)
        # PEFT replaces a block size that does not divide a layer's width by a nearby one, with a warning
        # only: the run would not be the one asked for, so it is refused, with the sizes that would work.
        layers = {n: m for n, m in adapted.named_modules() if hasattr(m, "oft_block_size")}
        changed = {
            n: m.in_features
            for n, m in layers.items()
            if m.oft_block_size.get("default") != self.options.block_size
        }
        if changed:
            widths = sorted({m.in_features for m in layers.values()})
            fits = [b for b in range(2, min(widths) + 1) if all(w % b == 0 for w in widths)]
            raise UnsupportedError(
                f"oft.block_size {self.options.block_size} does not divide the input width of "
                f"{len(changed)} adapted layer(s) of {ctx.model.name} (e.g. {next(iter(changed))}: "
                f"{next(iter(changed.values()))}); the adapted widths are {', '.join(map(str, widths))}, "
                f"which these block sizes divide: {', '.join(map(str, fits)) or 'none'}"
            )
        return adapted


@dataclass
class BoftOptions(ModelOptions):
    block_size: int = 4
    """Side of each orthogonal block of a butterfly factor (PEFT's default)."""
    butterfly_factor: int = 1
    """Butterfly factors composed into the rotation (PEFT's default 1: one block-diagonal factor). Above 1,
    PEFT needs its CUDA extension (built on first use with nvcc and ninja), and block_size ×
    2^(butterfly_factor - 1) must divide every adapted input width."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or 'all-linear'."""

    def check(self, where: str) -> None:
        super().check(where)
        require(self.block_size >= 2, f"{where}.block_size", f"must be at least 2, got {self.block_size}")
        require(
            self.butterfly_factor >= 1,
            f"{where}.butterfly_factor",
            f"must be at least 1, got {self.butterfly_factor}",
        )
        require(bool(self.target_modules), f"{where}.target_modules", "name at least one module")


@METHODS.register("boft")
class Boft(PeftMethod):
    """BOFT (Liu et al., 2024, "Parameter-Efficient Orthogonal Finetuning via Butterfly Factorization"):
    the rotation of each adapted layer's input is a product of m block-diagonal orthogonal factors, each
    between butterfly permutations (as in the Cooley–Tukey FFT), so m = log2(d/b) factors make it dense;
    a learned scale per output feature is trained as well. PEFT keeps m dense d_in × d_in permutation
    matrices per adapted layer, which the cost declares."""

    name = "boft"
    mergeable = True
    updates = "butterfly-factored orthogonal rotations of layer inputs"
    summary = "train orthogonal rotations built from butterfly-permuted blocks, plus output scales (PEFT)"
    Options = BoftOptions
    recipe = ORTHOGONAL_RECIPE
    cost = Cost(
        "m butterfly factors of b × b blocks and an output scale per adapted matrix; PEFT's dense "
        "permutation matrices, and the dense rotation formed in the forward pass",
        added=boft_params,
        artifact=boft_params,
        buffers=boft_buffers,
        block_activations=boft_activations,
        formed_per_block=boft_formed,
        check=check_blocks,
    )

    def peft_config(self, ctx: Context) -> Any:
        from peft import BOFTConfig  # lazy: slow import

        o = self.options
        return BOFTConfig(
            boft_block_size=o.block_size,
            boft_block_num=0,
            boft_n_butterfly_factor=o.butterfly_factor,
            target_modules=_targets(o),
            **self.common(),
        )

    def adapt(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        o = self.options
        try:
            adapted = super().adapt(model, ctx)
        except ValueError as e:  # PEFT's checks of the block size against each layer's width
            raise UnsupportedError(
                f"boft.block_size {o.block_size} with butterfly_factor {o.butterfly_factor} does not fit "
                f"{ctx.model.name}: {e} (block_size × 2^(butterfly_factor - 1) must divide every adapted "
                "input width)"
            ) from None
        # Without its CUDA extension PEFT silently trains one butterfly factor whatever was asked: refused,
        # so that a result is never labelled with a factor it did not use.
        factors = {m.get_buffer("boft_P").shape[0] for m in adapted.modules() if hasattr(m, "boft_P")}
        if factors and factors != {o.butterfly_factor}:
            raise UnsupportedError(
                f"boft.butterfly_factor {o.butterfly_factor} needs PEFT's BOFT CUDA extension (compiled on "
                f"first use, with nvcc and ninja), which could not be loaded on this machine "
                f"({ctx.device.type}); PEFT would train {min(factors)} factor instead. Use butterfly_factor: 1 "
                "here, or run on a CUDA machine with the CUDA toolkit"
            )
        return adapted
