"""Supervised training on given (prompt, target) texts with tunebench's own loop, so that distillation and
the SFT phase before DPO are measured exactly like plain fine-tuning (same loss, schedule and counters)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunebench.core.typed import require
from tunebench.train.data import encode
from tunebench.train.loop import TrainStats, train

if TYPE_CHECKING:
    from tunebench.methods.base import Context
    from tunebench.methods.tuning import ModelMethod
    from tunebench.train.budget import Budget


def supervised(
    method: ModelMethod, ctx: Context, prompts: list[str], targets: list[str], budget: Budget
) -> tuple[TrainStats, int]:
    """(what training cost, how many examples were truncated)."""
    examples, truncated = encode(method.tokenizer, prompts, targets, budget.max_length)
    stats = train(
        method.model,
        method.head.loss_fn(method),
        examples,
        budget,
        seed=ctx.seed,
        pad_id=method.tokenizer.pad_token_id,
        device=ctx.device,
        bf16=ctx.bf16,
        on_step=ctx.on_train_step,
        hook=method.train_hook(),
        optimizer_factory=method.optimizer_factory(),
    )
    return stats, truncated


@dataclass
class WarmStartOptions:
    """Options of an objective that can start with supervised steps (dpo, rl), checked in one place."""

    sft_steps: int = 0
    """Supervised steps on the gold (or chosen) answers first (0: start from the untrained method). For RL
    this matters: a model that never answers right gets a reward of 0 for every sample."""
    sft_lr: float | None = None
    """Learning rate of the SFT steps (unset: the budget's lr). Set it and leave the objective's own lr unset,
    and the budget's lr (and an `lr_grid` search) applies to the objective's steps alone."""

    def check_warm_start(self, where: str) -> None:
        require(self.sft_steps >= 0, f"{where}.sft_steps", "must be 0 or more")
        require(self.sft_lr is None or self.sft_lr > 0, f"{where}.sft_lr", "must be positive")


def warm_start(
    method: ModelMethod, ctx: Context, prompts: list[str], targets: list[str], steps: int, lr: float | None
) -> TrainStats:
    """The SFT phase before a preference or RL phase: `steps` supervised steps at `lr` (unset: the
    budget's), the rest of the budget as given; records the truncated count on the method."""
    budget = dataclasses.replace(ctx.budget, steps=steps, epochs=None, lr=ctx.budget.lr if lr is None else lr)
    stats, method.truncated = supervised(method, ctx, prompts, targets, budget)
    return stats


def combine(first: TrainStats, second: TrainStats) -> TrainStats:
    """Two training phases (SFT then DPO) as one cost: times, steps and tokens add, peaks take the larger."""
    seconds = first.seconds + second.seconds
    tokens = first.tokens + second.tokens
    gpu = [m for m in (first.peak_gpu_mb, second.peak_gpu_mb) if m is not None]
    return TrainStats(
        seconds=seconds,
        steps=first.steps + second.steps,
        examples=first.examples + second.examples,
        tokens=tokens,
        target_tokens=first.target_tokens + second.target_tokens,
        # unknown (0) unless both phases padded in tunebench's loop: TRL's does not say
        padded_tokens=first.padded_tokens + second.padded_tokens
        if first.padded_tokens and second.padded_tokens
        else 0,
        max_width=max(first.max_width, second.max_width) if first.max_width and second.max_width else 0,
        tokens_per_s=tokens / seconds if seconds > 0 else 0.0,
        peak_rss_mb=max(first.peak_rss_mb, second.peak_rss_mb),
        peak_gpu_mb=max(gpu) if gpu else None,
        bf16=first.bf16 or second.bf16,
        losses=first.losses + second.losses,
    )


def phase(stats: TrainStats) -> dict:
    """A phase's cost for result.json's objective record."""
    return {
        "steps": stats.steps,
        "seconds": stats.seconds,
        "tokens": stats.tokens,
        "peak_rss_mb": stats.peak_rss_mb,
        "peak_gpu_mb": stats.peak_gpu_mb,
        "final_loss": stats.losses[-1] if stats.losses else None,
    }
