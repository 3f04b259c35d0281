"""Was a run still improving when its budget ran out? Pure functions of its dev curve or training losses.

A method stopped while it was still learning is ranked as if it had converged; the report marks such runs
"budget-limited" instead. Two tests, the first that applies:

dev curve (at least 3 evaluations)
    still improving when the last dev score beats every score from the first three quarters of the run
    by more than `threshold` (at least one dev example's worth, 1 / n_dev: a single example flipping is
    noise, not learning).

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


def from_dev_curve(curve: list[tuple[int, float]], threshold: float) -> tuple[bool | None, str]:
    """(still improving, why) from [(step, dev score), ...] in step order."""
    if len(curve) < MIN_DEV_POINTS:
        return None, f"{len(curve)} dev evaluations (the test needs {MIN_DEV_POINTS})"
    last_step, last = curve[-1]
    earlier = [score for step, score in curve[:-1] if step <= 0.75 * last_step] or [curve[0][1]]
    before = max(earlier)
    gain = last - before
    verdict = gain > threshold
    return verdict, (
        f"dev {last:.4g} at step {last_step} against the best of the first three quarters {before:.4g} "
        f"({'+' if gain >= 0 else ''}{gain:.4g}; threshold {threshold:.4g})"
    )


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
    curve: list[tuple[int, float]], losses: list[float], *, stopped_early: bool, threshold: float
) -> dict[str, Any]:
    """The record stored as result.json's train.convergence."""
    if stopped_early:
        return {"still_improving": False, "evidence": "early stopping", "detail": "stopped by early stopping"}
    if len(curve) >= MIN_DEV_POINTS:
        verdict, detail = from_dev_curve(curve, threshold)
        return {"still_improving": verdict, "evidence": "dev curve", "detail": detail}
    verdict, detail = from_losses(losses)
    return {
        "still_improving": verdict,
        "evidence": "training loss" if verdict is not None else None,
        "detail": detail,
    }
