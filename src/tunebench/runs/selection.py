"""Learning-rate selection on the dev split, before the final runs.

A learning rate that suits LoRA (1e-3) ruins full fine-tuning, and one that suits full fine-tuning (1e-5)
leaves LoRA untrained: a leaderboard that gives every method the same learning rate measures the choice
of learning rate as much as the method. So each method that trains may declare `lr_grid` (in the budget
or on its own entry); every candidate is trained under the method's budget with the first seed of the
experiment, scored on the **dev** split (never on test), and the final runs of every seed use the winner.

Two searches:
  grid     every candidate gets the whole budget; costs one training run per candidate.
  halving  successive halving (Jamieson & Talwalkar, 2016; the rungs of Hyperband): all candidates train
           for a fraction of the steps, the better half on dev goes on with twice as many, and so on. The
           last rung, with one candidate left and the whole budget, is the final run itself; a grid of 4
           then costs 2 budgets of selection instead of 4.

The plan and the choice are pure functions (tested without a model); training a candidate is the
runner's `evaluate` callback, which also caches each candidate so a finished selection is never redone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunebench.config import Budget


@dataclass
class Candidate:
    lr: float
    steps: int
    """Optimizer steps this candidate trained for (the whole budget in a grid, less in early rungs)."""
    rung: int = 0
    status: str = "ok"
    metric: str | None = None
    """The task's primary metric, scored on the dev split."""
    dev_score: float | None = None
    final_loss: float | None = None
    """Mean training loss over the last tenth of the steps: the tie-breaker when dev scores are equal
    (a small dev split often scores several candidates the same)."""
    error: str | None = None

    def rank_key(self) -> tuple:
        """Sort key, best first: a higher dev score, then a lower final loss, then the smaller rate."""
        failed = self.status != "ok" or self.dev_score is None
        loss = self.final_loss if self.final_loss is not None and math.isfinite(self.final_loss) else math.inf
        return (failed, -(self.dev_score or 0.0), loss, self.lr)


def rung_fractions(n_candidates: int, search: str) -> list[float]:
    """Fraction of the budget each rung trains for; rung i keeps ⌈n / 2^i⌉ candidates.

    grid: [1.0]. halving with n candidates: R = ⌈log2 n⌉ rungs at 1/2^R, 1/2^(R-1), ..., 1/2; the rung
    after them (the whole budget, one candidate) is the final run.
    """
    if search == "grid" or n_candidates <= 1:
        return [1.0]
    rungs = math.ceil(math.log2(n_candidates))
    return [1.0 / 2 ** (rungs - i) for i in range(rungs)]


def scaled_budget(budget: Budget, lr: float, fraction: float) -> Budget:
    """The candidate's budget: the method's budget at learning rate `lr`, shortened to `fraction`."""
    if fraction >= 1.0:
        return dataclasses.replace(budget, lr=lr, lr_grid=[])
    if budget.epochs is not None:
        return dataclasses.replace(budget, lr=lr, lr_grid=[], epochs=budget.epochs * fraction)
    return dataclasses.replace(budget, lr=lr, lr_grid=[], steps=max(1, round(budget.steps * fraction)))


def choose(candidates: list[Candidate]) -> Candidate | None:
    """The best candidate that trained, or None when every one failed."""
    ok = sorted(
        (c for c in candidates if c.status == "ok" and c.dev_score is not None), key=Candidate.rank_key
    )
    return ok[0] if ok else None


def select_lr(budget: Budget, evaluate: Callable[[Budget, int], Candidate], *, seed: int) -> dict[str, Any]:
    """Run the search; `evaluate(candidate_budget, rung)` trains one candidate and scores it on dev.

    Returns the record that goes into each final run's result.json under `selection`.
    """
    survivors = list(budget.lr_grid)
    tried: list[Candidate] = []
    for rung, fraction in enumerate(rung_fractions(len(survivors), budget.lr_search)):
        scored = [evaluate(scaled_budget(budget, lr, fraction), rung) for lr in survivors]
        tried += scored
        keep = max(1, math.ceil(len(scored) / 2))
        survivors = [c.lr for c in sorted(scored, key=Candidate.rank_key)[:keep]]
    last_rung = [c for c in tried if c.rung == tried[-1].rung]
    winner = choose(last_rung)
    return {
        "search": budget.lr_search,
        "split": "dev",
        "metric": next((c.metric for c in tried if c.metric), None),
        "seed": seed,
        "grid": list(budget.lr_grid),
        "chosen_lr": winner.lr if winner else None,
        "candidates": [dataclasses.asdict(c) for c in tried],
    }


def final_loss(losses: list[float]) -> float | None:
    """Mean loss over the last tenth of the steps (at least one step)."""
    if not losses:
        return None
    tail = losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail)
