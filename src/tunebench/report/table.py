"""Results → the leaderboard: one entry per (model, method), its seeds aggregated. Pure data, no drawing.

Quality is the mean of the primary metric over seeds, with the spread across seeds (standard deviation)
and a 95% interval from a two-level bootstrap over seeds and test items (report/stats.py), so it widens
with training noise as well as with a small test set. Each entry is compared with the best by a paired
test on the same test items (McNemar's exact test with one seed each, a paired bootstrap with several),
Holm-corrected over the comparisons with the best; an entry that test cannot tell from the best is
marked as tied with it.

Costs are means over seeds: trainable parameters, peak memory in training and in evaluation (the CUDA
allocator's peak on a GPU, the process's resident set on a CPU), training time and tokens/s, artifact
size, latency per example (and after merging), and drift from the base model.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunebench.report import stats
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
    """Two-level bootstrap over seeds and items; with one seed, over items only; without predictions, the
    mean of the interval(s) the runs recorded."""
    best: bool = False
    tied: bool = False
    """Not distinguishable from the best by a paired test (Holm-corrected, alpha 0.05)."""
    diff_vs_best: float | None = None
    """This entry's mean minus the best's, metric units (0 for the best; None when there is no best)."""
    diff_ci95: tuple[float, float] | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    """p_value after Holm's correction over every comparison with the best."""
    test: str | None = None
    """The test of the comparison with the best (stats.MCNEMAR, PAIRED_BOOTSTRAP or UNPAIRED)."""
    budget_limited: bool = False
    """Some seed was still improving when its budget ran out (result.json's train.convergence)."""
    stopped_early: int = 0
    """Seeds that early stopping ended before their budget."""
    convergence: list[str] = field(default_factory=list)
    """'seed N: detail' for each seed found still improving."""
    trainable: float | None = None
    total: float | None = None
    trainable_pct: float | None = None
    steps: float | None = None
    planned_steps: float | None = None
    """The budget's steps (older results without it: the steps taken)."""
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
    search: dict[str, Any] | None = None
    """The configuration search that chose its options (result.json `search`; report/search.py)."""
    dev_curve: list[tuple[int, float]] = field(default_factory=list)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    api_tokens_per_1k: float | None = None
    """For a model behind an endpoint: prompt + completion tokens per 1,000 test examples, as it reported."""
    extra: dict[str, str] = field(default_factory=dict)
    """Columns added by callers (a cost-at-scale estimate, say), rendered after the built-in ones."""
    sample: stats.Sample | None = field(default=None, repr=False, compare=False)
    """Per-item scores and their bootstrap, for the comparisons (not rendered; left out of the JSON)."""

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
    correct: list[list[bool]], n_resamples: int = stats.N_RESAMPLES, seed: int = stats.SEED
) -> tuple[float, float] | None:
    """95% two-level bootstrap interval of the mean score; rows are seeds, columns the same test examples."""
    scores = np.asarray(correct, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] == 0:
        return None
    means = stats.two_level_bootstrap({"": scores}, n_resamples, seed)[""]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


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


def entry_from_runs(
    model: str, method: str, runs: list[RunData], sample: stats.Sample | None = None
) -> Entry:
    """One (model, method) from its runs; `sample` is its finished runs' bootstrap, computed with the other
    entries' by `leaderboard` (which shares the item resamples), else here."""
    entry = Entry(model=model, method=method, label=method)
    ok = _finished(runs)
    entry.failed = [(r.result["seed"], r.result.get("error") or "unknown error") for r in runs if not r.ok]
    if not ok:
        return entry
    results = [r.result for r in ok]
    entry.seeds = [r["seed"] for r in results]
    entry.metric_name = results[0]["primary_metric"]
    entry.per_seed = [float(r["metrics"][entry.metric_name]) for r in results]
    entry.mean = statistics.fmean(entry.per_seed)
    entry.std = statistics.stdev(entry.per_seed) if len(entry.per_seed) > 1 else None
    entry.sample = sample or stats.samples({_key(model, method): ok})[_key(model, method)]
    entry.ci95 = entry.sample.interval() if entry.sample is not None else _recorded_interval(ok)
    for name, keys in _COSTS.items():
        setattr(entry, name, _mean([_get(r, *keys) for r in results]))
    entry.planned_steps = entry.planned_steps or entry.steps
    entry.train_seconds = _mean([_get(r, "train", "seconds") or 0.0 for r in results])
    entry.train_peak_mb = _mean([_peak(r.get("train")) for r in results])
    entry.eval_peak_mb = _mean([_peak(r.get("eval")) for r in results])
    entry.lr = _get(results[0], "config", "budget", "lr") if entry.steps else None
    entry.selection = results[0].get("selection")
    entry.search = results[0].get("search")
    entry.loss_curve = _mean_curve([r.losses for r in ok if r.losses])
    entry.dev_curve = _mean_curve([_get(r, "train", "dev_curve") or [] for r in results])
    entry.api_tokens_per_1k = _mean([_api_tokens(r) for r in results])
    _convergence(entry, results)
    return entry


def _convergence(entry: Entry, results: list[dict[str, Any]]) -> None:
    """Budget-limited seeds and early-stopped ones; older results have neither record (unknown: unmarked)."""
    for r in results:
        conv = _get(r, "train", "convergence") or {}
        if conv.get("still_improving") is True:
            entry.budget_limited = True
            entry.convergence.append(f"seed {r['seed']}: {conv.get('detail') or 'still improving'}")
        if _get(r, "train", "early_stopping", "stopped_at") is not None:
            entry.stopped_early += 1


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
    "planned_steps": ("train", "planned_steps"),
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


def _finished(runs: list[RunData]) -> list[RunData]:
    """The runs that finished, by seed (the order the bootstrap's seed resampling sees them in)."""
    return sorted((r for r in runs if r.ok), key=lambda r: r.result["seed"])


def _key(model: str, method: str) -> str:
    """An entry's key for the bootstrap (it seeds the entry's seed resampling)."""
    return f"{model}\0{method}"


def _recorded_interval(ok: list[RunData]) -> tuple[float, float] | None:
    """Without predictions to resample: the mean of the intervals the runs recorded (items only)."""
    recorded = [tuple(r.result["ci95"]) for r in ok if r.result.get("ci95")]
    if not recorded:
        return None
    return statistics.fmean(lo for lo, _ in recorded), statistics.fmean(hi for _, hi in recorded)


def leaderboard(runs: list[RunData]) -> list[Entry]:
    """Entries best first (failed ones last), with the best marked and the ties with it."""
    groups: dict[tuple[str, str], list[RunData]] = {}
    for run in runs:
        groups.setdefault((run.result["model"], run.result["method"]), []).append(run)
    # every entry's bootstrap at once: the item resamples are drawn once per test-set size and shared
    found = stats.samples({_key(*k): _finished(rs) for k, rs in groups.items()})
    entries = [entry_from_runs(*k, rs, found[_key(*k)]) for k, rs in groups.items()]
    several_models = len({e.model for e in entries}) > 1
    for e in entries:
        e.label = f"{e.model} · {e.method}" if several_models else e.method
    # Equal scores: the cheaper method first (fewer trainable parameters, then less training time).
    entries.sort(key=lambda e: (not e.ok, -(e.mean or 0.0), e.trainable or 0, e.train_seconds or 0, e.label))
    mark_ties(entries)
    return entries


def best_entry(entries: list[Entry]) -> Entry | None:
    """The highest mean (the first of equals: in leaderboard order, the cheapest); None when every finished
    entry scores zero, since a "best" at zero would single out one of several methods that all failed."""
    ok = [e for e in entries if e.ok]
    if not ok:
        return None
    best = max(ok, key=lambda e: e.mean or 0.0)
    return best if (best.mean or 0.0) > 0.0 else None


def mark_ties(entries: list[Entry]) -> list[stats.Comparison]:
    """Compare every finished entry with the best (paired where possible), Holm-correct the family, and
    mark as tied those the corrected test cannot tell from the best. Returns the comparisons."""
    best = best_entry(entries)
    if best is None:
        return []
    best.best, best.diff_vs_best = True, 0.0
    others = [e for e in entries if e.ok and e is not best]
    comparisons = [stats.compare_entries(e, best) for e in others]
    stats.holm_adjust(comparisons)
    for e, c in zip(others, comparisons, strict=True):
        e.diff_vs_best, e.diff_ci95, e.test = c.diff, c.ci95, c.test
        e.p_value, e.p_adjusted = c.p_value, c.p_adjusted
        e.tied = c.p_value is not None and not c.distinguishable
    return comparisons


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
    # The budget is the steps planned: early stopping ends a run sooner within an equal budget, so the
    # steps and examples it actually took are compared only among the runs that used their whole budget.
    whole = [e for e in trained if not e.stopped_early]
    for name, unit, among in (
        ("planned_steps", "optimizer steps", trained),
        ("examples", "training examples", whole),
    ):
        values = {e.label: getattr(e, name) for e in among}
        if len(set(values.values())) > 1:
            shown = ", ".join(f"{label} {v:,.0f}" for label, v in values.items())
            notes.append(f"unequal {unit}: {shown}")
    if trained and not notes:
        e = trained[0]
        seen = f" and {whole[0].examples:,.0f} examples" if whole else ""
        notes.append(f"every trained method had a budget of {e.planned_steps:,.0f} optimizer steps{seen}")
    stopped = [f"{e.label} ({e.stopped_early} of {len(e.seeds)} seeds)" for e in trained if e.stopped_early]
    if stopped:
        notes.append(f"early stopping ended runs before their budget: {', '.join(stopped)}")
    return BudgetCheck(equal=not any(n.startswith("unequal") for n in notes), notes=notes)
