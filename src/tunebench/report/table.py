"""Results → the leaderboard: one entry per (model, method), its seeds aggregated. Pure data, no drawing.

Quality is the mean of the primary metric over seeds, with the spread across seeds (standard deviation)
and a 95% bootstrap interval. The interval resamples test examples of the seed-averaged per-example
score, so it reflects the size of the test set, while the spread reflects training noise; a method whose
interval overlaps the best method's interval is marked as statistically tied with it.

Costs are means over seeds: trainable parameters, peak memory in training and in evaluation (the CUDA
allocator's peak on a GPU, the process's resident set on a CPU), training time and tokens/s, artifact
size, latency per example (and after merging), and drift from the base model.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunebench.report.load import RunData


@dataclass
class Entry:
    model: str
    method: str
    label: str = ""
    """What charts and tables call it: the method, or 'model · method' when there are several models."""
    seeds: list[int] = field(default_factory=list)
    """Seeds that finished."""
    failed: list[tuple[int, str]] = field(default_factory=list)
    """(seed, reason) of the runs that failed."""
    metric_name: str | None = None
    mean: float | None = None
    std: float | None = None
    """Standard deviation over seeds (None with one seed)."""
    per_seed: list[float] = field(default_factory=list)
    ci95: tuple[float, float] | None = None
    best: bool = False
    tied: bool = False
    """Its interval overlaps the best entry's: not distinguishable from the best at this test size."""
    trainable: float | None = None
    total: float | None = None
    trainable_pct: float | None = None
    steps: float | None = None
    examples: float | None = None
    tokens: float | None = None
    train_seconds: float | None = None
    """0 for a method that does not train."""
    tokens_per_s: float | None = None
    train_peak_mb: float | None = None
    eval_peak_mb: float | None = None
    batched_ms: float | None = None
    """Evaluation seconds per example in batches (throughput)."""
    latency_ms: float | None = None
    """One example at a time (what a user waits)."""
    merged_latency_ms: float | None = None
    artifact_bytes: float | None = None
    drift: float | None = None
    wall_seconds: float | None = None
    lr: float | None = None
    selection: dict[str, Any] | None = None
    dev_curve: list[tuple[int, float]] = field(default_factory=list)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    api_tokens_per_1k: float | None = None
    """For a model behind an endpoint: prompt + completion tokens per 1,000 test examples, as it reported."""
    extra: dict[str, str] = field(default_factory=dict)
    """Columns added by callers (a cost-at-scale estimate, say), rendered after the built-in ones."""

    @property
    def ok(self) -> bool:
        return bool(self.seeds)

    @property
    def trains(self) -> bool:
        return bool(self.steps)

    @property
    def peak_mb(self) -> float | None:
        """The memory the method needs: the larger of its training and evaluation peaks."""
        peaks = [p for p in (self.train_peak_mb, self.eval_peak_mb) if p is not None]
        return max(peaks) if peaks else None

    @property
    def serve_latency_ms(self) -> float | None:
        """Latency as it would be served: merged when merging is possible (it is never slower in principle)."""
        return self.merged_latency_ms if self.merged_latency_ms is not None else self.latency_ms


def bootstrap_ci(
    correct: list[list[bool]], n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean score; rows are seeds, columns the same test examples."""
    scores = np.asarray(correct, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] == 0:
        return None
    per_example = scores.mean(axis=0)  # (N,) seed-averaged score of each example
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, per_example.size, size=(n_resamples, per_example.size))
    lo, hi = np.percentile(per_example[idx].mean(axis=1), [2.5, 97.5])
    return float(lo), float(hi)


def overlaps(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _get(result: dict[str, Any], *keys: str) -> Any:
    value: Any = result
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _peak(phase: dict[str, Any] | None) -> float | None:
    if not phase:
        return None
    return phase.get("peak_gpu_mb") or phase.get("peak_rss_mb")


def _mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Average of several seeds' curves at each step they share."""
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(int(step), []).append(float(value))
    return [(s, statistics.fmean(v)) for s, v in sorted(by_step.items()) if len(v) == len(curves)]


def entry_from_runs(model: str, method: str, runs: list[RunData]) -> Entry:
    entry = Entry(model=model, method=method, label=method)
    ok = sorted((r for r in runs if r.ok), key=lambda r: r.result["seed"])
    entry.failed = [(r.result["seed"], r.result.get("error") or "unknown error") for r in runs if not r.ok]
    if not ok:
        return entry
    results = [r.result for r in ok]
    entry.seeds = [r["seed"] for r in results]
    entry.metric_name = results[0]["primary_metric"]
    entry.per_seed = [float(r["metrics"][entry.metric_name]) for r in results]
    entry.mean = statistics.fmean(entry.per_seed)
    entry.std = statistics.stdev(entry.per_seed) if len(entry.per_seed) > 1 else None
    entry.ci95 = _interval(ok)
    for name, keys in _COSTS.items():
        setattr(entry, name, _mean([_get(r, *keys) for r in results]))
    entry.train_seconds = _mean([_get(r, "train", "seconds") or 0.0 for r in results])
    entry.train_peak_mb = _mean([_peak(r.get("train")) for r in results])
    entry.eval_peak_mb = _mean([_peak(r.get("eval")) for r in results])
    entry.lr = _get(results[0], "config", "budget", "lr") if entry.steps else None
    entry.selection = results[0].get("selection")
    entry.loss_curve = _mean_curve([r.losses for r in ok if r.losses])
    entry.dev_curve = _mean_curve([_get(r, "train", "dev_curve") or [] for r in results])
    entry.api_tokens_per_1k = _mean([_api_tokens(r) for r in results])
    return entry


def _api_tokens(result: dict[str, Any]) -> float | None:
    per_1k = _get(result, "usage", "per_1k_examples") or {}
    prompt, completion = per_1k.get("prompt_tokens"), per_1k.get("completion_tokens")
    return None if prompt is None or completion is None else prompt + completion


#: Entry field → where it is in result.json; averaged over seeds.
_COSTS = {
    "trainable": ("params", "trainable"),
    "total": ("params", "total"),
    "trainable_pct": ("params", "trainable_pct"),
    "steps": ("train", "steps"),
    "examples": ("train", "examples"),
    "tokens": ("train", "tokens"),
    "tokens_per_s": ("train", "tokens_per_s"),
    "batched_ms": ("eval", "ms_per_example"),
    "latency_ms": ("latency", "ms_per_example"),
    "merged_latency_ms": ("latency", "merged_ms_per_example"),
    "artifact_bytes": ("artifact", "bytes"),
    "drift": ("drift", "nll_increase"),
    "wall_seconds": ("wall_seconds",),
}


def _interval(ok: list[RunData]) -> tuple[float, float] | None:
    """Bootstrap over examples when every seed left its predictions, else the recorded interval(s)."""
    rows = [r.correct for r in ok]
    if all(row is not None for row in rows) and len({len(row) for row in rows}) == 1:
        return bootstrap_ci(rows)
    recorded = [tuple(r.result["ci95"]) for r in ok if r.result.get("ci95")]
    if not recorded:
        return None
    return statistics.fmean(lo for lo, _ in recorded), statistics.fmean(hi for _, hi in recorded)


def leaderboard(runs: list[RunData]) -> list[Entry]:
    """Entries best first (failed ones last), with the best marked and the ties with it."""
    groups: dict[tuple[str, str], list[RunData]] = {}
    for run in runs:
        groups.setdefault((run.result["model"], run.result["method"]), []).append(run)
    entries = [entry_from_runs(model, method, rs) for (model, method), rs in groups.items()]
    several_models = len({e.model for e in entries}) > 1
    for e in entries:
        e.label = f"{e.model} · {e.method}" if several_models else e.method
    # Equal scores: the cheaper method first (fewer trainable parameters, then less training time).
    entries.sort(key=lambda e: (not e.ok, -(e.mean or 0.0), e.trainable or 0, e.train_seconds or 0, e.label))
    mark_ties(entries)
    return entries


def mark_ties(entries: list[Entry]) -> None:
    ok = [e for e in entries if e.ok]
    if not ok:
        return
    best = max(ok, key=lambda e: e.mean or 0.0)  # the first of equals: in leaderboard order, the cheapest
    if not (best.mean or 0.0) > 0.0:  # every method at zero: none is "best" (and nothing is recommended)
        return
    for e in ok:
        e.best = e is best
        e.tied = e is not best and overlaps(e.ci95, best.ci95)


@dataclass
class BudgetCheck:
    """Were the trained methods given the same budget? Shown beside the leaderboard."""

    equal: bool
    notes: list[str]


def budget_check(entries: list[Entry]) -> BudgetCheck:
    """Compare optimizer steps and examples seen across the methods that train.

    Tokens differ legitimately (a prefix adds none to the data, a chat template adds some) and are shown,
    not judged; wall time is shown too, as the cost of the budget rather than the budget itself.
    """
    trained = [e for e in entries if e.ok and e.trains]
    notes = []
    for name, unit in (("steps", "optimizer steps"), ("examples", "training examples")):
        values = {e.label: getattr(e, name) for e in trained}
        if len(set(values.values())) > 1:
            shown = ", ".join(f"{label} {v:,.0f}" for label, v in values.items())
            notes.append(f"unequal {unit}: {shown}")
    if trained and not notes:
        e = trained[0]
        notes.append(
            f"every trained method saw {e.steps:,.0f} optimizer steps and {e.examples:,.0f} examples"
        )
    return BudgetCheck(equal=not any(n.startswith("unequal") for n in notes), notes=notes)
