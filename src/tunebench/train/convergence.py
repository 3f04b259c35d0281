"""Was a run still improving when its budget ran out? Pure functions of its dev curve or training losses.

A method stopped while it was still learning is ranked as if it had converged; the report marks such runs
"budget-limited" instead. Two tests, the first that applies:

dev curve (at least 3 evaluations)
    still improving when the best dev score of the run's last quarter (by steps) beats the best of its
    first three quarters by more than `threshold` (at least one dev example's worth, 1 / n_dev, or the
    early-stopping rule's min_delta) *and* beyond the dev split's noise: the two checkpoints answer the
    same dev examples, so the gain is tested as McNemar's exact one-sided test on the examples only one
    of them got right (p < 0.05). Without the per-example answers (a resumed run) only the threshold
    applies. A gain of a few dev examples between two checkpoints is what a converged model's wobble
    looks like, and is not flagged.

training loss (at least 20 steps; no dev curve)
    still improving when the mean loss of the last tenth of the steps is below the mean of the tenth that
    ends at three quarters of the run by more than two standard errors of that difference and by more
    than 1% of the earlier mean. Per-step losses are noisy (each is one batch), so a lower tail must be
    lower beyond that noise to count.

A run that early stopping ended had stopped improving by definition. With neither test possible the
answer is unknown (None).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

#: Fewest dev evaluations, and fewest optimizer steps, for the two tests.
MIN_DEV_POINTS = 3
MIN_LOSS_STEPS = 20
#: Level of the dev curve's one-sided test.
ALPHA = 0.05


def from_dev_curve(
    curve: list[tuple[int, float]], threshold: float, items: dict[int, list[bool]] | None = None
) -> tuple[bool | None, str]:
    """(still improving, why) from [(step, dev score), ...] in step order; `items`: step → that
    evaluation's per-example correctness, where known."""
    if len(curve) < MIN_DEV_POINTS:
        return None, f"{len(curve)} dev evaluations (the test needs {MIN_DEV_POINTS})"
    last_step = curve[-1][0]
    late = [p for p in curve if p[0] > 0.75 * last_step] or [curve[-1]]
    early = [p for p in curve if p[0] <= 0.75 * last_step] or [curve[0]]
    (early_step, before), (late_step, after) = max(early, key=_score), max(late, key=_score)
    gain = after - before
    verdict = gain > threshold
    detail = (
        f"best dev {after:.4g} in the last quarter (step {late_step}) against {before:.4g} before it "
        f"(step {early_step}): {'+' if gain >= 0 else ''}{gain:.4g}, threshold {threshold:.4g}"
    )
    late_items, early_items = (items or {}).get(late_step), (items or {}).get(early_step)
    if verdict and late_items is not None and early_items is not None and len(late_items) == len(early_items):
        gained = sum(a and not b for a, b in zip(late_items, early_items, strict=True))
        lost = sum(b and not a for a, b in zip(late_items, early_items, strict=True))
        p = sign_test(gained, lost)
        verdict = p < ALPHA
        detail += f"; {gained} dev examples gained, {lost} lost (one-sided exact p {p:.2g})"
    return verdict, detail


def _score(point: tuple[int, float]) -> float:
    return point[1]


def sign_test(gained: int, lost: int) -> float:
    """One-sided exact McNemar p: the chance of `gained` or more of the `gained + lost` changed examples going
    the right way if each were a fair coin."""
    n = gained + lost
    return sum(math.comb(n, i) for i in range(gained, n + 1)) / 2**n if n else 1.0


def from_losses(losses: list[float]) -> tuple[bool | None, str]:
    """(still improving, why) from the per-step training losses."""
    n = len(losses)
    if n < MIN_LOSS_STEPS:
        return None, f"{n} training steps (the test needs {MIN_LOSS_STEPS})"
    tenth = max(2, n // 10)
    end_a = round(0.75 * n)
    window_a, window_b = losses[end_a - tenth : end_a], losses[n - tenth :]
    mean_a, mean_b = statistics.fmean(window_a), statistics.fmean(window_b)
    se = math.sqrt(statistics.variance(window_a) / tenth + statistics.variance(window_b) / tenth)
    drop = mean_a - mean_b
    verdict = drop > 2 * se and drop > 0.01 * abs(mean_a)
    return verdict, (
        f"mean loss {mean_b:.4g} over the last {tenth} steps against {mean_a:.4g} over the {tenth} steps "
        f"ending at step {end_a} (drop {drop:.4g}; two standard errors {2 * se:.4g})"
    )


def convergence(
    curve: list[tuple[int, float]],
    losses: list[float],
    *,
    stopped_early: bool,
    threshold: float,
    items: dict[int, list[bool]] | None = None,
) -> dict[str, Any]:
    """The record stored as result.json's train.convergence."""
    if stopped_early:
        return {"still_improving": False, "evidence": "early stopping", "detail": "stopped by early stopping"}
    if len(curve) >= MIN_DEV_POINTS:
        verdict, detail = from_dev_curve(curve, threshold, items)
        return {"still_improving": verdict, "evidence": "dev curve", "detail": detail}
    verdict, detail = from_losses(losses)
    return {
        "still_improving": verdict,
        "evidence": "training loss" if verdict is not None else None,
        "detail": detail,
    }
